// What an agent publishes about the orphans on its node — domains and volumes of this cluster
// whose object is gone (a finalizer removed by force, an etcd or Velero restore) — and how the
// controller reads it back, to place the object that is applied again where its data is.
// Shared by both sides. Pure.
import { PREFIX } from "../api/names.ts";

/** On the Node, written by its agent only when the set of orphans changes. */
export const ORPHANS_ANNOTATION = `${PREFIX}orphans`;
/** More than this many of a kind are counted, not listed (annotations are small). */
export const ORPHANS_LISTED_MAX = 200;

export interface OrphanInterface {
  name: string;
  mac: string;
  network?: string;
  ipv4?: string;
  ipv6?: string;
}

/** A domain of this cluster whose VirtualMachine is gone: what a VM applied again takes over. */
export interface OrphanDomain {
  namespace: string;
  name: string;
  uuid: string;
  interfaces?: OrphanInterface[];
}

/** A volume of this cluster whose VMDisk is gone. */
export interface OrphanVolume {
  namespace: string;
  name: string;
  pool: string;
  /** In a pool every node sees: any of them may take the disk. */
  shared?: boolean;
}

export interface OrphanReport {
  domains: OrphanDomain[];
  volumes: OrphanVolume[];
  /** Orphans beyond ORPHANS_LISTED_MAX per kind, counted only. */
  unlisted?: number;
}

const byKey = (a: { namespace: string; name: string }, b: { namespace: string; name: string }) =>
  a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name);

/** The annotation's value (null: no orphans, the annotation goes), the same for the same set. */
export function orphanAnnotation(report: OrphanReport): string | null {
  const domains = [...report.domains].sort(byKey);
  const volumes = [...report.volumes].sort((a, b) => byKey(a, b) || a.pool.localeCompare(b.pool));
  if (!domains.length && !volumes.length) return null;
  const unlisted =
    Math.max(0, domains.length - ORPHANS_LISTED_MAX) + Math.max(0, volumes.length - ORPHANS_LISTED_MAX);
  return JSON.stringify({
    domains: domains.slice(0, ORPHANS_LISTED_MAX),
    volumes: volumes.slice(0, ORPHANS_LISTED_MAX),
    ...(unlisted ? { unlisted } : {}),
  });
}

const isText = (v: unknown): v is string => typeof v === "string" && v.length > 0;

/** The report in a Node's annotation; entries that do not read right are left out. */
export function parseOrphanAnnotation(value: string | undefined): OrphanReport {
  const empty: OrphanReport = { domains: [], volumes: [] };
  if (!value) return empty;
  let raw: { domains?: unknown; volumes?: unknown };
  try {
    raw = JSON.parse(value) as typeof raw;
  } catch {
    return empty;
  }
  const list = (v: unknown) => (Array.isArray(v) ? (v as Array<Record<string, unknown>>) : []);
  const domains = list(raw.domains).flatMap((d): OrphanDomain[] =>
    isText(d.namespace) && isText(d.name) && isText(d.uuid)
      ? [
          {
            namespace: d.namespace,
            name: d.name,
            uuid: d.uuid,
            interfaces: list(d.interfaces).flatMap((i): OrphanInterface[] =>
              isText(i.name) && isText(i.mac)
                ? [
                    {
                      name: i.name,
                      mac: i.mac,
                      ...(isText(i.network) ? { network: i.network } : {}),
                      ...(isText(i.ipv4) ? { ipv4: i.ipv4 } : {}),
                      ...(isText(i.ipv6) ? { ipv6: i.ipv6 } : {}),
                    },
                  ]
                : [],
            ),
          },
        ]
      : [],
  );
  const volumes = list(raw.volumes).flatMap((v): OrphanVolume[] =>
    isText(v.namespace) && isText(v.name) && isText(v.pool)
      ? [
          {
            namespace: v.namespace,
            name: v.name,
            pool: v.pool,
            ...(v.shared === true ? { shared: true } : {}),
          },
        ]
      : [],
  );
  return { domains, volumes };
}
