// Pure: what a restore does with the VM afterwards, and what of the VM it cannot roll back.
import type { VirtualMachineSpec } from "../../api/virtualmachine.ts";

/**
 * Whether the VM runs after a restore: Always and RerunOnFailure always run; Halted never does;
 * Manual and Once keep what they were doing when the restore began; a frozen VM never runs.
 */
export function shouldRunAfterRestore(
  runStrategy: string | undefined,
  wasRunning: boolean,
  frozen = false,
): boolean {
  if (frozen) return false;
  switch (runStrategy ?? "Always") {
    case "Always":
    case "RerunOnFailure":
      return true;
    case "Halted":
      return false;
    default:
      return wasRunning;
  }
}

const HARDWARE: ReadonlyArray<[keyof VirtualMachineSpec, string]> = [
  ["cpu", "CPU"],
  ["memory", "memory"],
  ["hypervisor", "hypervisor"],
  ["interfaces", "interfaces"],
  ["boot", "boot"],
  ["cdrom", "CD-ROM"],
];

/**
 * What changed in the VM since the snapshot that a restore does not roll back (the VM's spec
 * belongs to its owner, Git included): said once per change, with what the guest gets.
 */
export function hardwareChanges(
  recorded: Record<string, unknown> | undefined,
  current: VirtualMachineSpec,
  memoryRestored: boolean,
): string[] {
  if (!recorded) return [];
  const notes: string[] = [];
  const changed = HARDWARE.filter(
    ([field]) => JSON.stringify(recorded[field] ?? null) !== JSON.stringify(current[field] ?? null),
  ).map(([, label]) => label);
  if (changed.length)
    notes.push(
      `the VM's ${changed.join(", ")} changed since the snapshot and ${changed.length > 1 ? "are" : "is"} not restored` +
        (memoryRestored
          ? ": the guest resumed with the snapshot's hardware and gets the current spec at its next boot"
          : ": the VM keeps its current spec"),
    );
  const before = new Set(((recorded.disks as Array<{ name: string }> | undefined) ?? []).map((d) => d.name));
  const added = (current.disks ?? []).map((d) => d.name).filter((n) => !before.has(n));
  if (added.length)
    notes.push(`disks added since the snapshot (${added.join(", ")}) keep their current content`);
  return notes;
}
