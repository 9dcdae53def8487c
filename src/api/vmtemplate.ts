// VMTemplate: a VM blueprint that VirtualMachines are created from.
import { type Static, Type } from "@sinclair/typebox";
import {
  Conditions,
  immutable,
  NamedList,
  ObjectName,
  ObservedGeneration,
  presenceImmutable,
  Quantity,
  StringEnum,
  withRules,
} from "./common.ts";
import type { CustomObject, KindDefinition } from "./kind.ts";
import { DISK_BUSES, MAX_PROVISIONED_SIZE, VMTemplateKind } from "./names.ts";
import { VirtualMachineSpec } from "./virtualmachine.ts";
import { DISK_FORMATS } from "./vmdisk.ts";

export const TEMPLATE_PHASES = ["Pending", "Ready", "Failed"] as const;

const DiskTemplate = Type.Object(
  {
    name: Type.String({
      description: "Disk name in VMs made from the template.",
      pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
      maxLength: 63,
    }),
    size: Quantity(
      `Provisioned size of the disk each VM gets, at most ${MAX_PROVISIONED_SIZE} (at least the image's size; a larger disk grows it).`,
    ),
    format: Type.Optional(
      StringEnum(DISK_FORMATS, {
        description:
          "Format of the base, and of a full copy: qcow2 (default) or raw. A linked clone is always qcow2.",
      }),
    ),
    image: Type.Optional(
      Type.String({
        description:
          "The image the disk starts from, imported once per node and template generation into a read-only " +
          "base (a VMDisk owned by the template): an absolute path inside the agent's image import " +
          "directories or an http(s) URL, with the same rules as a VMDisk's spec.source.image. Without " +
          "an image each VM gets a blank disk.",
        pattern: "^(/|https?://)",
        maxLength: 4096,
      }),
    ),
    bus: Type.Optional(StringEnum(DISK_BUSES, { description: "Bus; default virtio." })),
    bootOrder: Type.Optional(Type.Integer({ description: "Boot position.", minimum: 1, maximum: 64 })),
    fullCopy: Type.Optional(
      Type.Boolean({
        description:
          "Give each VM a full copy of the base instead of a linked qcow2 clone (a thin volume that reads " +
          "what the guest did not change from the base). Default false.",
      }),
    ),
  },
  { description: "A disk each VM made from the template gets." },
);

const vmProps = VirtualMachineSpec.properties;

const TemplateSpec = Type.Object(
  {
    cpu: vmProps.cpu,
    memory: Quantity("Memory of each VM (a VM's own spec.memory overrides it)."),
    hypervisor: vmProps.hypervisor,
    disks: Type.Optional(NamedList(DiskTemplate, "Disks to create for each VM, keyed by name.", 64)),
    interfaces: vmProps.interfaces,
    boot: vmProps.boot,
    shutdown: vmProps.shutdown,
    runStrategy: vmProps.runStrategy,
  },
  {
    description:
      "What each VM made from the template gets; any field the VM sets itself wins (its disks are added " +
      "by name).",
  },
);

export const VMTemplateSpec = withRules(
  Type.Object(
    {
      description: Type.Optional(
        Type.String({ description: "Free text about the template.", maxLength: 4096 }),
      ),
      template: Type.Optional(TemplateSpec),
      prefetchNodes: Type.Optional(
        Type.Array(ObjectName("A node name."), {
          description:
            "Nodes the bases are fetched to ahead of time, so the first VM there starts without waiting for " +
            "an import (elsewhere a base is fetched when the first VM made from the template is placed).",
          maxItems: 64,
        }),
      ),
      source: Type.Optional(
        withRules(
          Type.Object(
            {
              vmName: ObjectName(
                "Turn this VirtualMachine into the template. It must be stopped and stay so: a runStrategy " +
                  "of Halted, Manual or Once, and no VMSnapshots. Its disks become the template's bases " +
                  "(read-only, owned by the template) and it never starts again while they are; deleting " +
                  "it leaves them. Deleting the template gives the disks back to the VM, or removes them " +
                  "when the VM is gone.",
              ),
            },
            {
              description:
                "Make the template from an existing VM (set as template): VMs made from it get its hardware " +
                "and linked clones of its disks, on its node unless the disks are in a shared pool. Immutable.",
            },
          ),
          immutable("spec.source"),
        ),
      ),
    },
    { description: "What VMs made from the template look like." },
  ),
  {
    rule: "has(self.template) != has(self.source)",
    message: "spec needs exactly one of template or source",
  },
  presenceImmutable("source", "spec.source"),
  {
    rule: "!has(self.prefetchNodes) || has(self.template)",
    message: "spec.prefetchNodes is for a template with spec.template (a VM's disks are its bases already)",
    fieldPath: ".prefetchNodes",
  },
);

export const VMTemplateStatus = Type.Object(
  {
    observedGeneration: Type.Optional(ObservedGeneration()),
    phase: Type.Optional(
      StringEnum(TEMPLATE_PHASES, {
        description:
          "Pending (bases being imported, or the source VM not ready to become a template), Ready, or " +
          "Failed (see the Ready condition).",
      }),
    ),
    progress: Type.Optional(
      Type.Integer({ description: "Percent done of the bases being imported.", minimum: 0, maximum: 100 }),
    ),
    children: Type.Optional(
      Type.Array(Type.String(), {
        description: "VirtualMachines of the namespace made from the template, by name.",
      }),
    ),
    targetNodes: Type.Optional(
      Type.Array(Type.String(), {
        description:
          "Nodes a VM made from the template can run on now: enabled, with a live node agent, offering the " +
          "hypervisor and the networks, with room in the storage pool for the bases and a disk of each " +
          "(a template made from a VM: the node of its disks, unless they are in a shared pool).",
      }),
    ),
    bases: Type.Optional(
      Type.Array(
        Type.Object(
          {
            vmDisk: Type.String({ description: "The base's VMDisk." }),
            disk: Type.String({ description: "The template disk it is the base of." }),
            node: Type.Optional(Type.String({ description: "Its node." })),
            generation: Type.Integer({ description: "The template generation it was made for." }),
            phase: Type.Optional(Type.String({ description: "Its VMDisk's phase." })),
          },
          { description: "A base." },
        ),
        { description: "The read-only volumes VMs made from the template are cloned from." },
      ),
    ),
    vm: Type.Optional(
      Type.Object(
        {
          name: Type.String({ description: "The VM the template was made from (spec.source.vmName)." }),
          uid: Type.String({ description: "Its UID." }),
          spec: Type.Object(
            {},
            {
              description: "Its hardware when it became the template, without its identity.",
              "x-kubernetes-preserve-unknown-fields": true,
            },
          ),
          disks: Type.Array(
            Type.Object(
              {
                name: Type.String({ description: "The disk's name in the VM." }),
                vmDisk: Type.String({ description: "Its VMDisk, now a base." }),
                ownedByVm: Type.Boolean({
                  description: "The VM owned it before: given back to the VM when the template goes.",
                }),
              },
              { description: "A disk of the VM that became a base." },
            ),
            { description: "The VM's disks that became bases." },
          ),
        },
        { description: "For a template made from a VM: what it took from the VM." },
      ),
    ),
    conditions: Type.Optional(Conditions()),
  },
  { description: "Observed state of the template." },
);

export const VMTemplateDefinition: KindDefinition = {
  ...VMTemplateKind,
  description:
    "A blueprint for VirtualMachines. A VM with spec.source.template gets the template's hardware and " +
    "linked clones (or full copies) of its disks; later edits of the template change no existing VM. " +
    "A template with VMs made from it cannot be deleted until they are gone.",
  spec: VMTemplateSpec,
  status: VMTemplateStatus,
  rootRules: [
    {
      rule: "size(self.metadata.name) <= 63",
      message:
        "metadata.name: a VMTemplate name may have at most 63 characters (it labels the template's bases)",
    },
  ],
  printerColumns: [
    { name: "Phase", type: "string", jsonPath: ".status.phase" },
    { name: "Children", type: "string", jsonPath: ".status.children" },
    { name: "Targets", type: "string", jsonPath: ".status.targetNodes", priority: 1 },
    { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
  ],
};

export type VMTemplateSpec = Static<typeof VMTemplateSpec>;
export type VMTemplateStatus = Static<typeof VMTemplateStatus>;
export type VMTemplate = CustomObject<VMTemplateSpec, VMTemplateStatus>;
export type TemplateShape = NonNullable<VMTemplateSpec["template"]>;
