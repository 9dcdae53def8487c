// The verbs: one function per verb, each reading through the API server, building with the pure
// modules (patches, builders, rows, judges) and writing creates or merge patches of spec and
// annotations only (what the `edit` role allows), dry-run capable.
import type { ParsedCommand } from "./args.ts";
import type { PluginClient } from "./client.ts";
import { type Output, VerbContext } from "./verbs-base.ts";

type Handler = (ctx: VerbContext) => Promise<void>;

// Each verb loads only its own module: a write pays for no other verb's code (a call must be fast).
const devices = () => import("./verbs-devices.ts");
const power = () => import("./verbs-power.ts");
const snapshots = () => import("./verbs-snapshots.ts");
const status = () => import("./verbs-status.ts");
const templates = () => import("./verbs-templates.ts");

const HANDLERS: Record<string, Handler> = {
  status: async (ctx) => (await status()).status(ctx),
  stats: async (ctx) => (await status()).stats(ctx),
  start: async (ctx) => (await power()).start(ctx),
  stop: async (ctx) => (await power()).stop(ctx),
  restart: async (ctx) => (await power()).restart(ctx),
  pause: async (ctx) => (await power()).pause(ctx, true),
  unpause: async (ctx) => (await power()).pause(ctx, false),
  freeze: async (ctx) => (await power()).freeze(ctx),
  unfreeze: async (ctx) => (await power()).unfreeze(ctx),
  fsfreeze: async (ctx) => (await power()).guestFilesystems(ctx, "fsfreeze"),
  fsthaw: async (ctx) => (await power()).guestFilesystems(ctx, "fsthaw"),
  snapshot: async (ctx) => (await snapshots()).snapshot(ctx),
  snapshots: async (ctx) => (await snapshots()).snapshots(ctx),
  "delete-snapshot": async (ctx) => (await snapshots()).deleteSnapshot(ctx),
  restore: async (ctx) => (await snapshots()).restore(ctx),
  rotation: async (ctx) => (await snapshots()).rotation(ctx),
  clone: async (ctx) => (await snapshots()).clone(ctx),
  "set-as-template": async (ctx) => (await templates()).setAsTemplate(ctx),
  "create-from-template": async (ctx) => (await templates()).createFromTemplate(ctx),
  children: async (ctx) => (await templates()).children(ctx),
  targets: async (ctx) => (await templates()).targets(ctx),
  "cdrom insert": async (ctx) => (await devices()).cdromInsert(ctx),
  "cdrom eject": async (ctx) => (await devices()).cdromEject(ctx),
  "disk attach": async (ctx) => (await devices()).diskAttach(ctx),
  "disk activate": async (ctx) => (await devices()).diskActive(ctx, true),
  "disk deactivate": async (ctx) => (await devices()).diskActive(ctx, false),
  "disk detach": async (ctx) => (await devices()).diskDetach(ctx),
};

/** Verbs with a handler (help is answered before connecting). */
export const IMPLEMENTED_VERBS = Object.keys(HANDLERS);

export async function runVerb(client: PluginClient, cmd: ParsedCommand, io: Output, now?: () => Date) {
  const handler = HANDLERS[cmd.verb.name];
  if (!handler) throw new Error(`no handler for "kubectl vm ${cmd.verb.name}"`);
  await handler(new VerbContext(client, cmd, io, now));
}
