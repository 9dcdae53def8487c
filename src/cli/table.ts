// kubectl-style tables and ages, byte for byte what `kubectl get` prints, so scripts that cut
// kubectl's columns (awk '{print $1}') work on ours too.

// kubectl prints through Go's tabwriter with minwidth 6, padding 3 (printers.GetNewTabWriter):
// a column is as wide as its widest cell plus three spaces, and at least six.
const MIN_CELL_WIDTH = 6;
const CELL_PADDING = 3;

/** Renders HEADERS (upper-cased) and ROWS; a missing cell prints as kubectl's "<none>". */
export function renderTable(
  headers: readonly string[],
  rows: ReadonlyArray<ReadonlyArray<string | undefined>>,
): string {
  const cells = [
    headers.map((h) => h.toUpperCase()),
    ...rows.map((r) => headers.map((_, i) => cellText(r[i]))),
  ];
  const widths = headers.map((_, col) =>
    Math.max(MIN_CELL_WIDTH, ...cells.map((row) => (row[col] as string).length + CELL_PADDING)),
  );
  // The last column is not padded: tabwriter pads only cells followed by a tab.
  return cells
    .map((row) =>
      row.map((cell, col) => (col === row.length - 1 ? cell : cell.padEnd(widths[col] as number))).join(""),
    )
    .join("\n")
    .concat("\n");
}

function cellText(value: string | undefined): string {
  return value === undefined || value === "" ? "<none>" : value;
}

/**
 * kubectl's age (k8s.io/apimachinery duration.HumanDuration): two units while they say something
 * useful, one after. "<unknown>" when there is no timestamp.
 */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < -1) return "<invalid>";
  if (seconds < 0) return "0s";
  if (seconds < 60 * 2) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) {
    const s = seconds % 60;
    return s === 0 ? `${minutes}m` : `${minutes}m${s}s`;
  }
  if (minutes < 60 * 3) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) {
    const m = minutes % 60;
    return m === 0 ? `${hours}h` : `${hours}h${m}m`;
  }
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) {
    const h = hours % 24;
    return h === 0 ? `${Math.floor(hours / 24)}d` : `${Math.floor(hours / 24)}d${h}h`;
  }
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  const years = Math.floor(hours / 24 / 365);
  if (years < 8) {
    const d = Math.floor(hours / 24) % 365;
    return d === 0 ? `${years}y` : `${years}y${d}d`;
  }
  return `${years}y`;
}

/** Age of an RFC 3339 TIMESTAMP at NOW, as kubectl's AGE column shows it. */
export function age(timestamp: string | undefined, now: Date): string {
  if (!timestamp) return "<unknown>";
  const t = Date.parse(timestamp);
  return Number.isNaN(t) ? "<unknown>" : humanDuration(now.getTime() - t);
}
