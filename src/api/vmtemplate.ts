// VMTemplate: a VM blueprint that VirtualMachines are created from.
import { type Static, Type } from "@sinclair/typebox";
import {
  Conditions,
  immutable,
  NamedList,
  nameFitsHost,
  ObjectName,
  ObservedGeneration,
  presenceImmutable,
  Quantity,
  StringEnum,
  withRules,
} from "./common.ts";
import type { KindDefinition } from "./kind.ts";
import { DISK_BUSES, VirtualMachineSpec } from "./virtualmachine.ts";
import { DISK_FORMATS } from "./vmdisk.ts";

export const TEMPLATE_PHASES = ["Pending", "Ready", "Failed"] as const;

const DiskTemplate = Type.Object(
  {
    name: Type.String({
      description: "Disk name in VMs made from the template.",
      pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
      maxLength: 63,
    }),
    size: Quantity("Provisioned size of the disk."),
    format: Type.Optional(StringEnum(DISK_FORMATS, { description: "qcow2 (default) or raw." })),
    image: Type.Optional(
      Type.String({
        description: "Base image: an absolute path on the node or an http(s) URL.",
        pattern: "^(/|https?://)",
        maxLength: 4096,
      }),
    ),
    bus: Type.Optional(StringEnum(DISK_BUSES, { description: "Bus; default virtio." })),
    bootOrder: Type.Optional(Type.Integer({ description: "Boot position.", minimum: 1, maximum: 64 })),
    fullCopy: Type.Optional(
      Type.Boolean({
        description: "Give each VM a full copy instead of a linked qcow2 clone of the base (default false).",
      }),
    ),
  },
  { description: "A disk each VM made from the template gets." },
);

const vmProps = VirtualMachineSpec.properties;

const TemplateSpec = Type.Object(
  {
    cpu: vmProps.cpu,
    memory: vmProps.memory,
    hypervisor: vmProps.hypervisor,
    disks: Type.Optional(NamedList(DiskTemplate, "Disks to create for each VM, keyed by name.", 64)),
    interfaces: vmProps.interfaces,
    boot: vmProps.boot,
    shutdown: vmProps.shutdown,
    runStrategy: vmProps.runStrategy,
  },
  { description: "The VM shape instantiated for each child: CPU, memory, disks, interfaces, boot." },
);

export const VMTemplateSpec = withRules(
  Type.Object(
    {
      description: Type.Optional(
        Type.String({ description: "Free text about the template.", maxLength: 4096 }),
      ),
      template: Type.Optional(TemplateSpec),
      source: Type.Optional(
        withRules(
          Type.Object(
            {
              vmName: ObjectName("Turn this stopped VirtualMachine into the template."),
            },
            { description: "Make the template from an existing VM. Immutable." },
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
);

export const VMTemplateStatus = Type.Object(
  {
    observedGeneration: Type.Optional(ObservedGeneration()),
    phase: Type.Optional(StringEnum(TEMPLATE_PHASES, { description: "Pending, Ready or Failed." })),
    children: Type.Optional(
      Type.Array(Type.String(), { description: "VirtualMachines created from the template (get_children)." }),
    ),
    targetNodes: Type.Optional(
      Type.Array(Type.String(), {
        description: "Nodes the template can be instantiated on (get_target_pmachines).",
      }),
    ),
    conditions: Type.Optional(Conditions()),
  },
  { description: "Observed state of the template." },
);

export const VMTemplateKind: KindDefinition = {
  kind: "VMTemplate",
  plural: "vmtemplates",
  singular: "vmtemplate",
  shortNames: ["vmtpl", "vmtpls"],
  description:
    "A blueprint for VirtualMachines. A VM with spec.source.template gets the " +
    "template's shape and clones of its disks. A template with children cannot be deleted.",
  spec: VMTemplateSpec,
  status: VMTemplateStatus,
  rootRules: [nameFitsHost("VMTemplate")],
  printerColumns: [
    { name: "Phase", type: "string", jsonPath: ".status.phase" },
    { name: "Children", type: "string", jsonPath: ".status.children" },
    { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
  ],
};

export type VMTemplateSpec = Static<typeof VMTemplateSpec>;
export type VMTemplateStatus = Static<typeof VMTemplateStatus>;
