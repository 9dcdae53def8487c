// VMDisk: a volume in a node's storage pool (the oVirt disks of seed 002).
import { type Static, Type } from "@sinclair/typebox";
import {
  Conditions,
  growOnly,
  immutable,
  LastOperation,
  nameFitsHost,
  ObjectName,
  ObservedGeneration,
  presenceImmutable,
  Quantity,
  SAFE_NAME_PATTERN,
  StringEnum,
  withRules,
} from "./common.ts";
import type { CustomObject, KindDefinition } from "./kind.ts";
import { HOST_NAME_MAX, MAX_PROVISIONED_SIZE, VMDiskKind } from "./names.ts";

export const DISK_FORMATS = ["qcow2", "raw"] as const;
export const DISK_PHASES = [
  "Pending",
  "Creating",
  "Ready",
  "Locked",
  "Resizing",
  "Illegal",
  "Deleting",
  "Unknown",
] as const;

const DiskSource = withRules(
  Type.Object(
    {
      blank: Type.Optional(Type.Object({}, { description: "An empty volume (the default)." })),
      disk: Type.Optional(
        Type.Object(
          {
            name: ObjectName("The VMDisk to copy; the new disk goes to its node."),
            linked: Type.Optional(
              Type.Boolean({
                description:
                  "Make a thin qcow2 volume on top of the source instead of a full copy: only what the " +
                  "guest changes is stored, the rest is read from the source. The source must be a " +
                  "VMTemplate's base (status.baseOf), which no VM ever writes. Default false.",
              }),
            ),
          },
          { description: "Clone another VMDisk." },
        ),
      ),
      snapshot: Type.Optional(
        Type.Object(
          {
            name: Type.String({
              description: "The VMSnapshot holding the disk state.",
              pattern: SAFE_NAME_PATTERN,
              maxLength: 253,
            }),
            disk: Type.String({
              description: "Name of the disk inside the snapshotted VM (spec.disks[].name).",
              maxLength: 63,
            }),
          },
          { description: "Create the volume from a disk of a VMSnapshot." },
        ),
      ),
      image: Type.Optional(
        Type.Object(
          {
            url: Type.String({
              description:
                "Where the image comes from: an absolute path on the node, inside the agent's image import " +
                "directories (chart value agent.imageImportDirs), or an http(s) URL. A URL may reach only " +
                "global unicast addresses (no loopback, private, link-local, unique local, NAT64, 6to4 or " +
                "multicast address, however written), unless the node's admin allows the range " +
                "(agent.imageImport.allowedNetworks); every redirect (at most 5) is checked the same way. " +
                "The image may not be larger than the node's maximum (agent.imageImport.maxBytes, default " +
                "64Gi): its length, its qcow2 virtual size and the bytes received count, and a download " +
                "stops the moment it passes it. user:password@ in the URL is sent as basic auth and never " +
                "shown in status, Events or logs. qcow2 and raw are detected and converted to spec.format; " +
                "qcow2 images that name a backing file are refused.",
              pattern: "^(/|https?://)",
              maxLength: 4096,
            }),
          },
          { description: "Import an image." },
        ),
      ),
    },
    { description: "What the volume is created from; at most one. Immutable." },
  ),
  immutable("spec.source"),
  {
    rule: "[has(self.blank), has(self.disk), has(self.snapshot), has(self.image)].filter(x, x).size() <= 1",
    message: "spec.source takes at most one of blank, disk, snapshot or image",
  },
);

export const VMDiskSpec = withRules(
  Type.Object(
    {
      description: Type.Optional(Type.String({ description: "Free text about the disk.", maxLength: 4096 })),
      provisionedSize: Quantity(
        `Size the guest sees, at most ${MAX_PROVISIONED_SIZE}. It may grow, also while attached and running; ` +
          "it never shrinks. It counts in full against the storage pool (times the admin's overcommit ratio, " +
          "sparse or not) and against the namespace's disk byte limit (Namespace annotation " +
          "vm.libvirt-operator.io/disk-bytes-limit, else the chart's tenancy.diskBytesPerNamespace): a disk " +
          "over either waits unplaced, or keeps its size, with a condition saying why.",
      ),
      format: Type.Optional(
        withRules(
          StringEnum(DISK_FORMATS, {
            description: "Volume format: qcow2 (copy on write, snapshots; default) or raw. Immutable.",
            default: "qcow2",
          }),
          immutable("spec.format"),
        ),
      ),
      sparse: Type.Optional(
        Type.Boolean({
          description: "Allocate space as the guest writes (true, default) or preallocate it all.",
          default: true,
        }),
      ),
      storagePool: Type.Optional(
        withRules(
          Type.String({
            description:
              "libvirt storage pool of the node. Default: the agent's default pool. Only pools the namespace " +
              "may use are accepted (Namespace annotation vm.libvirt-operator.io/allowed-storage-pools, else " +
              "the chart's tenancy.allowedStoragePools); another is refused with a condition. Immutable.",
            pattern: SAFE_NAME_PATTERN,
            maxLength: 63,
          }),
          immutable("spec.storagePool"),
        ),
      ),
      nodeName: Type.Optional(
        withRules(
          ObjectName(
            "Node whose pool holds the disk. When absent the operator picks one (the node of the VM that " +
              "uses it). Immutable.",
          ),
          immutable("spec.nodeName"),
        ),
      ),
      source: Type.Optional(DiskSource),
      bootable: Type.Optional(Type.Boolean({ description: "The disk holds a bootable system." })),
      shareable: Type.Optional(
        Type.Boolean({ description: "May be attached to several VMs at once. Default false." }),
      ),
      readOnly: Type.Optional(Type.Boolean({ description: "Every VM gets the disk read-only." })),
      wipeAfterDelete: Type.Optional(
        Type.Boolean({ description: "Zero the data before the volume is deleted." }),
      ),
      propagateErrors: Type.Optional(
        Type.Boolean({
          description: "Pass I/O errors to the guest instead of pausing the VM. Default false.",
        }),
      ),
    },
    { description: "Desired state of the disk." },
  ),
  growOnly("provisionedSize", "spec.provisionedSize"),
  presenceImmutable("storagePool", "spec.storagePool"),
  presenceImmutable("nodeName", "spec.nodeName"),
  {
    rule:
      "!isQuantity(string(self.provisionedSize)) || " +
      `quantity(string(self.provisionedSize)).compareTo(quantity('${MAX_PROVISIONED_SIZE}')) <= 0`,
    message: `spec.provisionedSize may be at most ${MAX_PROVISIONED_SIZE}`,
    fieldPath: ".provisionedSize",
  },
  presenceImmutable("source", "spec.source"),
  {
    rule: "!has(self.source) || !has(self.source.disk) || !has(self.source.disk.linked) || !self.source.disk.linked || !has(self.format) || self.format == 'qcow2'",
    message: "a linked clone (spec.source.disk.linked) is a qcow2 volume",
    fieldPath: ".format",
  },
);

export const VMDiskStatus = Type.Object(
  {
    observedGeneration: Type.Optional(ObservedGeneration()),
    phase: Type.Optional(
      StringEnum(DISK_PHASES, {
        description:
          "Pending, Creating, Ready, Locked (being copied), Resizing, Illegal (failed; see conditions), Deleting, " +
          "Unknown (its node's agent is not heard from; see the NodeLost condition).",
      }),
    ),
    provisionedSize: Type.Optional(Type.Integer({ description: "Size the guest sees, bytes." })),
    actualSize: Type.Optional(Type.Integer({ description: "Space allocated on the node, bytes." })),
    path: Type.Optional(Type.String({ description: "Volume path on the node." })),
    pool: Type.Optional(Type.String({ description: "Storage pool holding the volume." })),
    nodeName: Type.Optional(Type.String({ description: "Node holding the volume." })),
    format: Type.Optional(Type.String({ description: "Format of the volume on disk." })),
    attachedTo: Type.Optional(
      Type.Array(Type.String(), { description: "VirtualMachines the disk is attached to." }),
    ),
    storagePoolShared: Type.Optional(
      Type.Boolean({ description: "The pool is shared storage (NFS, Ceph …): every node can use the disk." }),
    ),
    progress: Type.Optional(
      Type.Integer({ description: "Percent done of a running import or copy.", minimum: 0, maximum: 100 }),
    ),
    statistics: Type.Optional(
      Type.Object(
        {
          readBytesPerSecond: Type.Optional(Type.Integer({ description: "Reads, bytes per second." })),
          writeBytesPerSecond: Type.Optional(Type.Integer({ description: "Writes, bytes per second." })),
          readOpsPerSecond: Type.Optional(Type.Integer({ description: "Read operations per second." })),
          writeOpsPerSecond: Type.Optional(Type.Integer({ description: "Write operations per second." })),
          readBytes: Type.Optional(Type.Integer({ description: "Bytes read since the VM started." })),
          writeBytes: Type.Optional(Type.Integer({ description: "Bytes written since the VM started." })),
          updatedAt: Type.Optional(
            Type.String({ format: "date-time", description: "When the figures were sampled." }),
          ),
        },
        { description: "I/O rates while attached to a running VM." },
      ),
    ),
    lastOperation: Type.Optional(LastOperation),
    baseOf: Type.Optional(
      Type.Object(
        {
          template: Type.String({ description: "The VMTemplate." }),
          templateUID: Type.String({ description: "Its UID." }),
        },
        {
          description:
            "The disk is a base of this VMTemplate: VMs made from the template have linked clones of it. A " +
            "base is attached read-only to any VM, never grown, and not deleted while a clone of it exists.",
        },
      ),
    ),
    conditions: Type.Optional(Conditions()),
  },
  { description: "Observed state of the disk." },
);

export const VMDiskDefinition: KindDefinition = {
  ...VMDiskKind,
  description:
    "A virtual disk: a volume in a node's libvirt storage pool, created blank, cloned or imported, and " +
    "attached to VirtualMachines through spec.disks. " +
    `Names have at most ${HOST_NAME_MAX} characters (they become file names on the node).`,
  spec: VMDiskSpec,
  status: VMDiskStatus,
  rootRules: [nameFitsHost("VMDisk")],
  printerColumns: [
    { name: "Phase", type: "string", jsonPath: ".status.phase" },
    { name: "Size", type: "string", jsonPath: ".spec.provisionedSize" },
    { name: "Node", type: "string", jsonPath: ".status.nodeName" },
    { name: "AttachedTo", type: "string", jsonPath: ".status.attachedTo" },
    { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
  ],
};

export type VMDiskSpec = Static<typeof VMDiskSpec>;
export type VMDiskStatus = Static<typeof VMDiskStatus>;

export type VMDisk = CustomObject<VMDiskSpec, VMDiskStatus>;
