// What bounds an image import on this node: the networks an http(s) URL may reach beyond
// global unicast (IMAGE_IMPORT_ALLOWED_NETWORKS) and the largest image (IMAGE_MAX_BYTES),
// read from the agent's environment; and the byte count that enforces the maximum while the
// image streams.
import { isPositiveQuantity, parseQuantity } from "../../api/quantity.ts";
import { type Network, NetworkListError, parseNetworks } from "./address-policy.ts";
import { formatBytes } from "./download-deadlines.ts";

/** 64 GiB: a large cloud image's virtual size, while a URL cannot fill a pool unnoticed. */
export const DEFAULT_IMAGE_MAX_BYTES = 64 * 2 ** 30;

export interface ImportLimits {
  /** Ranges an http(s) import may connect to besides global unicast addresses. */
  allowedNetworks: readonly Network[];
  /** Largest image: its length, its qcow2 virtual size, and the bytes actually received. */
  maxBytes: number;
}

export const DEFAULT_IMPORT_LIMITS: ImportLimits = { allowedNetworks: [], maxBytes: DEFAULT_IMAGE_MAX_BYTES };

export interface ImageSource {
  /** Bytes the image has, when the source says so (an http response may not). */
  length?: number;
  /** Its first bytes (up to IMAGE_HEADER_BYTES), to tell qcow2 from raw before anything is written. */
  header: Uint8Array;
  /** Every byte, header included, never more than the length or the maximum. */
  chunks: AsyncIterable<Uint8Array>;
  /** Releases the file or connection when the bytes are not wanted after all. */
  close(): void;
}

/** A problem with the image the user has to fix (wrong URL, missing file, refused address, too large). */
export class ImageSourceError extends Error {}

/** A setting of the agent's environment it cannot start with. */
export class ImportConfigError extends Error {
  readonly variable: string;
  readonly entry: string;
  constructor(variable: string, entry: string, why: string) {
    super(`${variable}: ${why}`);
    this.variable = variable;
    this.entry = entry;
  }
}

/** The limits ENV sets; throws ImportConfigError naming the variable and the bad entry. */
export function importLimitsFromEnv(env: Record<string, string | undefined>): ImportLimits {
  let allowedNetworks: Network[];
  try {
    allowedNetworks = parseNetworks(env.IMAGE_IMPORT_ALLOWED_NETWORKS ?? "");
  } catch (err) {
    if (!(err instanceof NetworkListError)) throw err;
    throw new ImportConfigError("IMAGE_IMPORT_ALLOWED_NETWORKS", err.entry, err.message);
  }
  const maxText = env.IMAGE_MAX_BYTES?.trim() || String(DEFAULT_IMAGE_MAX_BYTES);
  const maxBytes = isPositiveQuantity(maxText) ? parseQuantity(maxText) : Number.NaN;
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 1)
    throw new ImportConfigError(
      "IMAGE_MAX_BYTES",
      maxText,
      `"${maxText}" is not a positive size; write e.g. 64Gi or integer bytes`,
    );
  return { allowedNetworks, maxBytes };
}

export interface ByteLimit {
  /** The image as shown in messages (credentials redacted). */
  shown: string;
  maxBytes: number;
  /** What the source announced; more than that is refused too. */
  length?: number;
}

/** "the maximum image size of 8 MiB (…)": how errors name the limit, for the user and the admin. */
export function maximumText(maxBytes: number): string {
  return `the maximum image size of ${formatBytes(maxBytes)} this node allows (agent.imageImport.maxBytes)`;
}

/**
 * Yields SOURCE's chunks, counting them: the moment the count passes the maximum (or the
 * announced length) it fails, and the source is released (the connection closed) mid-stream.
 */
export async function* limitImageBytes(
  source: AsyncIterable<Uint8Array>,
  limit: ByteLimit,
): AsyncGenerator<Uint8Array, void, undefined> {
  let received = 0;
  for await (const chunk of source) {
    received += chunk.byteLength;
    if (received > limit.maxBytes)
      throw new ImageSourceError(
        `${limit.shown}: stopped after ${received} bytes: the image is larger than ${maximumText(limit.maxBytes)}`,
      );
    if (limit.length !== undefined && received > limit.length)
      throw new ImageSourceError(
        `${limit.shown}: stopped after ${received} bytes: more than the ${limit.length} bytes it announced`,
      );
    yield chunk;
  }
}
