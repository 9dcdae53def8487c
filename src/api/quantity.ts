// Pure: Kubernetes quantities ("1Gi", "512M", "1e3", integer bytes) → bytes.
/** A positive Kubernetes quantity: a non-zero number, then an optional binary/decimal suffix or exponent. */
export const POSITIVE_QUANTITY_PATTERN =
  "^\\+?([0-9]*[1-9][0-9]*(\\.[0-9]*)?|[0-9]*\\.[0-9]*[1-9][0-9]*)([KMGTPE]i|[mkMGTPE]|[eE][+-]?[0-9]+)?$";

const BINARY: Record<string, number> = {
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};
const DECIMAL: Record<string, number> = { m: 1e-3, "": 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18 };
const QUANTITY = /^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))([KMGTPE]i|[mkMGTPE]|[eE][+-]?[0-9]+)?$/;
const POSITIVE = new RegExp(POSITIVE_QUANTITY_PATTERN);

/** Whether the API server's schema accepts VALUE as a positive quantity. */
export function isPositiveQuantity(value: number | string): boolean {
  return typeof value === "number" ? Number.isInteger(value) && value >= 1 : POSITIVE.test(value);
}

/** Bytes of a quantity, rounded up to a whole byte (as Kubernetes does for Value()). */
export function parseQuantity(value: number | string): number {
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new Error(`invalid quantity ${value}`);
    return Math.ceil(value);
  }
  const m = QUANTITY.exec(value.trim());
  if (!m) throw new Error(`invalid quantity "${value}": use e.g. 1Gi, 512Mi or integer bytes`);
  const [, num = "0", suffix = ""] = m;
  let factor: number;
  if (suffix in BINARY) factor = BINARY[suffix]!;
  else if (suffix in DECIMAL) factor = DECIMAL[suffix]!;
  else factor = 10 ** Number(suffix.slice(1));
  return Math.ceil(Number(num) * factor);
}
