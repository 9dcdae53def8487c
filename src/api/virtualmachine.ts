// VirtualMachine: the desired state of one libvirt domain, and what the operator observed.
import { type Static, Type } from "@sinclair/typebox";
import {
  Conditions,
  immutable,
  LastOperation,
  NamedList,
  nameFitsHost,
  ObjectName,
  ObservedGeneration,
  presenceImmutable,
  Quantity,
  SAFE_NAME_PATTERN,
  StringEnum,
  Timestamp,
  withRules,
} from "./common.ts";
import type { CustomObject, KindDefinition } from "./kind.ts";
import { DISK_BUSES, HOST_NAME_MAX, RUN_STRATEGIES, VirtualMachineKind } from "./names.ts";

export const HYPERVISORS = ["kvm", "qemu"] as const;
export const NIC_MODELS = ["virtio", "e1000", "rtl8139"] as const;
export const BOOT_DEVICES = ["hd", "cdrom", "network"] as const;
export const PRINTABLE_STATUSES = [
  "Stopped",
  "Frozen",
  "Scheduling",
  "Provisioning",
  "Starting",
  "Running",
  "Paused",
  "Stopping",
  "Terminating",
  "Migrating",
  "Failed",
  "ErrorUnschedulable",
  "Unknown",
] as const;
export const SYNC_STATUSES = ["OK", "NOK", "CREATED", "SYNC", "SYNC_NOK"] as const;
export const HYPERVISOR_STATUSES = [
  "RUNNING",
  "BLOCKED",
  "PAUSED",
  "SHUTDOWN",
  "HALTED",
  "CRASHED",
  "PMSUSPENDED",
  "UNKNOWN",
] as const;

const CpuTune = Type.Object(
  {
    period: Type.Optional(
      Type.Integer({
        description:
          "Enforcement interval of the cgroup CPU bandwidth controller, in microseconds (1000–1000000). " +
          "Together with quota it limits CPU time.",
        minimum: 1000,
        maximum: 1000000,
      }),
    ),
    quota: Type.Optional(
      Type.Integer({
        description:
          "Maximum CPU time per vCPU in each period, in microseconds (1000–17592186044415); -1 means no limit.",
        minimum: -1,
        maximum: 17592186044415,
      }),
    ),
    shares: Type.Optional(
      Type.Integer({
        description: "Relative CPU weight against other domains on the node (cgroup shares, 2–262144).",
        minimum: 2,
        maximum: 262144,
      }),
    ),
  },
  { description: "CPU bandwidth limits for the domain (libvirt <cputune>)." },
);

const NumaCell = Type.Object(
  {
    index: Type.Integer({ description: "Index of the virtual NUMA node, from 0.", minimum: 0, maximum: 63 }),
    memory: Quantity("Memory of this virtual NUMA node."),
    cpus: Type.String({
      description: "The vCPUs in this node as a CPU list, e.g. 0-1 or 0,2.",
      pattern: "^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$",
      maxLength: 256,
    }),
    hostNodes: Type.Optional(
      Type.String({
        description: "Host NUMA nodes this virtual node is pinned to, e.g. 0 or 0-1.",
        pattern: "^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$",
        maxLength: 256,
      }),
    ),
  },
  { description: "A virtual NUMA node." },
);

const Cpu = Type.Object(
  {
    cores: Type.Optional(
      Type.Integer({
        description: "Number of vCPU cores per socket. Default 1.",
        minimum: 1,
        maximum: 512,
        default: 1,
      }),
    ),
    sockets: Type.Optional(
      Type.Integer({ description: "Number of CPU sockets. Default 1.", minimum: 1, maximum: 64 }),
    ),
    threads: Type.Optional(
      Type.Integer({ description: "Number of threads per core. Default 1.", minimum: 1, maximum: 8 }),
    ),
    cputune: Type.Optional(CpuTune),
    numa: Type.Optional(
      Type.Array(NumaCell, {
        description: "Virtual NUMA topology and its pinning to host NUMA nodes.",
        maxItems: 64,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["index"],
      }),
    ),
  },
  {
    description: "Virtual CPU topology and limits. The guest sees sockets × cores × threads vCPUs.",
  },
);

const VmDisk = Type.Object(
  {
    name: Type.String({
      description: "Name of the disk inside this VM; unique in the list.",
      pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
      maxLength: 63,
    }),
    diskRef: Type.Object(
      { name: ObjectName("Name of the VMDisk in the VM's namespace.") },
      { description: "The VMDisk that backs this disk." },
    ),
    bus: Type.Optional(
      StringEnum(DISK_BUSES, {
        description: "Bus the guest sees the disk on: virtio (default), scsi, sata or ide.",
        default: "virtio",
      }),
    ),
    bootOrder: Type.Optional(
      Type.Integer({
        description: "Position in the boot order; lower boots first. Disks without it are not booted from.",
        minimum: 1,
        maximum: 64,
      }),
    ),
    readOnly: Type.Optional(Type.Boolean({ description: "Attach the disk read-only." })),
    active: Type.Optional(
      Type.Boolean({
        description:
          "Whether the disk is connected. Setting false on a running VM " +
          "hot-unplugs it; true plugs it back. Default true.",
        default: true,
      }),
    ),
  },
  { description: "A VMDisk attached to this VM." },
);

/**
 * Rules the API server applies to a host path (CD-ROM image, kernel, initrd): what is never
 * valid anywhere. The node agent judges the rest (media directories, symlinks) on its node.
 */
function hostPathRules(field: string, allowEmpty: boolean) {
  return [
    {
      rule: allowEmpty ? "self == '' || self.startsWith('/')" : "self.startsWith('/')",
      message: `${field} must be an absolute path (starting with /)${allowEmpty ? ", or empty for an empty drive" : ""}`,
    },
    { rule: "!self.contains('\\u0000')", message: `${field} must not contain a NUL character` },
    {
      rule: "!self.matches('(^|/)\\\\.\\\\.(/|$)')",
      message: `${field} must not contain a '..' segment: name the file inside a media directory directly`,
    },
  ];
}

/** Said in every host path's description: where such a path may point. */
const HOST_PATH_RULE =
  "For admins: the node agent accepts only a regular file inside one of the media directories its admin " +
  "configured (chart value agent.mediaDirs), judged after following symlinks and '..', and never inside a " +
  "storage pool, an image import directory or the agent's own state; the resolved path is what the VM gets. " +
  "Anything else is refused with a Failure condition and a Warning Event, and the domain is left unchanged.";

const Cdrom = withRules(
  Type.Object(
    {
      image: Type.Optional(
        withRules(
          Type.String({
            description:
              "Path of an ISO image on the node, or empty for an empty drive (ejected). Changing it on a running " +
              `VM changes the medium live. ${HOST_PATH_RULE} Tenants use diskRef instead.`,
            maxLength: 4096,
          }),
          ...hostPathRules("spec.cdrom.image", true),
        ),
      ),
      diskRef: Type.Optional(
        Type.Object(
          { name: ObjectName("Name of the VMDisk in the VM's namespace.") },
          {
            description:
              "A VMDisk of the VM's namespace as the medium (an ISO imported like any image, spec.format raw), " +
              "attached read-only. The VM runs on the disk's node and holds the disk while it names it, as " +
              "with spec.disks: a disk that is not shareable goes to one VM only. Changing it on a running " +
              "VM changes the medium live.",
          },
        ),
      ),
      bootOnce: Type.Optional(
        Type.Boolean({
          description: "Boot from the CD-ROM only at the next start, then from the disks.",
        }),
      ),
      bus: Type.Optional(
        StringEnum(["sata", "ide", "scsi"] as const, {
          description: "Bus of the CD-ROM drive. Default sata.",
          default: "sata",
        }),
      ),
    },
    {
      description:
        "The VM's CD-ROM drive and its medium: exactly one of image (a host path, for admins; empty for an " +
        "empty drive) or diskRef (a VMDisk).",
    },
  ),
  {
    rule: "has(self.image) != has(self.diskRef)",
    message:
      "spec.cdrom needs exactly one of image (a path, or empty for an empty drive) or diskRef (a VMDisk)",
  },
);

const Interface = Type.Object(
  {
    name: Type.String({
      description: "Name of the interface inside this VM; unique in the list.",
      pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
      maxLength: 63,
    }),
    network: Type.Optional(
      Type.String({
        description:
          "libvirt network the NIC connects to. Default: the network named default. Only networks " +
          "the namespace may use (set by the admin) are accepted; another gets Admitted=False, reason NetworkNotAllowed.",
        pattern: SAFE_NAME_PATTERN,
        maxLength: 63,
        default: "default",
      }),
    ),
    model: Type.Optional(
      StringEnum(NIC_MODELS, { description: "NIC model the guest sees. Default virtio.", default: "virtio" }),
    ),
    macAddress: Type.Optional(
      Type.String({
        description:
          "MAC address. Generated when absent and then kept for the VM's lifetime. One VM's only: a MAC " +
          "another VM already uses gets Admitted=False, reason MacAddressInUse.",
        pattern: "^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$",
      }),
    ),
    linked: Type.Optional(
      Type.Boolean({ description: "Link state of the NIC (cable plugged). Default true.", default: true }),
    ),
    plugged: Type.Optional(
      Type.Boolean({
        description: "Whether the NIC device is present in the VM (hot-plug). Default true.",
        default: true,
      }),
    ),
  },
  { description: "A network interface." },
);

const Boot = Type.Object(
  {
    order: Type.Optional(
      Type.Array(StringEnum(BOOT_DEVICES, { description: "A boot device: hd, cdrom or network." }), {
        description: "Boot device order when no disk sets bootOrder. Default [hd].",
        maxItems: 3,
      }),
    ),
    firmware: Type.Optional(
      StringEnum(["bios", "uefi"] as const, { description: "Firmware: bios (default) or uefi." }),
    ),
    kernel: Type.Optional(
      withRules(
        Type.String({
          description: `Path of a kernel on the node for direct kernel boot. ${HOST_PATH_RULE}`,
          maxLength: 4096,
        }),
        ...hostPathRules("spec.boot.kernel", false),
      ),
    ),
    initrd: Type.Optional(
      withRules(
        Type.String({
          description: `Path of an initrd on the node for direct kernel boot. ${HOST_PATH_RULE}`,
          maxLength: 4096,
        }),
        ...hostPathRules("spec.boot.initrd", false),
      ),
    ),
    cmdline: Type.Optional(
      Type.String({ description: "Kernel command line for direct kernel boot.", maxLength: 4096 }),
    ),
  },
  { description: "How the VM boots: device order, firmware, or a kernel given directly." },
);

const Shutdown = Type.Object(
  {
    gracePeriodSeconds: Type.Optional(
      Type.Integer({
        description:
          "Seconds the guest gets to power off after an ACPI shutdown or reboot request before it is " +
          "forced off. 0 forces at once. Default 180. One stop or restart may ask for another (kubectl vm " +
          "stop|restart --grace-period N or --force, which add ';grace=N' to the request annotation's time).",
        minimum: 0,
        maximum: 86400,
        default: 180,
      }),
    ),
  },
  { description: "How the VM is stopped and rebooted." },
);

const Source = withRules(
  Type.Object(
    {
      template: Type.Optional(
        ObjectName(
          "Create the VM from this VMTemplate of the namespace: it gets the template's hardware wherever its " +
            "own spec says nothing, and disks of its own (VMDisks <vm>-<disk>, owned by the VM) that are " +
            "linked clones of the template's bases, or full copies. What it took is kept in " +
            "status.template: later edits of the template do not change it.",
        ),
      ),
      snapshot: Type.Optional(
        Type.String({
          description: "Create the VM as a clone of this VMSnapshot's VM at the snapshot.",
          pattern: SAFE_NAME_PATTERN,
          maxLength: 253,
        }),
      ),
    },
    { description: "Where the VM comes from. Immutable." },
  ),
  immutable("spec.source"),
  {
    rule: "has(self.template) != has(self.snapshot)",
    message: "spec.source needs exactly one of template or snapshot",
  },
);

const SnapshotPolicy = Type.Object(
  {
    schedule: Type.String({
      description:
        "When to take automatic snapshots: a cron schedule of 5 fields in UTC, e.g. '0 */6 * * *', or " +
        "@hourly, @daily, @weekly, @monthly, @yearly. Schedules missed while the operator was down give one " +
        "snapshot when it is back, not one per missed time.",
      pattern: "^(@(hourly|daily|weekly|monthly|yearly))|(\\S+\\s+\\S+\\s+\\S+\\s+\\S+\\s+\\S+)$",
      maxLength: 128,
    }),
    keep: Type.Integer({
      description:
        "How many automatic snapshots to keep: the oldest beyond this are deleted. Never deleted by rotation: " +
        "sticky snapshots, those named in exclude, snapshots you took yourself, and one a restore or a clone " +
        "is using. Failed automatic snapshots do not count, and are deleted after an hour.",
      minimum: 1,
      maximum: 1000,
    }),
    memory: Type.Optional(
      Type.Boolean({ description: "Save the memory of a running VM with each snapshot." }),
    ),
    consistent: Type.Optional(
      Type.Boolean({
        description: "Freeze the guest's file systems through its guest agent for each snapshot.",
      }),
    ),
    failureDeadline: Type.Optional(
      Type.String({
        description: "spec.failureDeadline of each automatic snapshot (default 5m).",
        pattern: "^([0-9]{1,4}h)?([0-9]{1,5}m)?([0-9]{1,6}s)?$",
        minLength: 2,
        maxLength: 16,
      }),
    ),
    exclude: Type.Optional(
      Type.Array(ObjectName("A VMSnapshot of this VM never deleted by rotation."), {
        description: "Automatic snapshots to keep out of rotation, by name (changeable at any time).",
        maxItems: 100,
      }),
    ),
    suspend: Type.Optional(
      Type.Boolean({ description: "Take no automatic snapshots and rotate none while true." }),
    ),
    maxFailures: Type.Optional(
      Type.Integer({
        description:
          "After this many automatic snapshots in a row failed, the policy suspends itself (condition " +
          "SnapshotPolicy=False, reason TooManyFailures) until you set resume to a new value. Default 5.",
        minimum: 1,
        maximum: 100,
      }),
    ),
    resume: Type.Optional(
      Type.String({
        description:
          "Set to a new value (e.g. the current time) to resume a policy that suspended itself after maxFailures " +
          "failures; failures before it no longer count.",
        maxLength: 64,
      }),
    ),
  },
  { description: "Automatic snapshots on a schedule, with rotation." },
);

export const VirtualMachineSpec = withRules(
  Type.Object(
    {
      description: Type.Optional(Type.String({ description: "Free text about the VM.", maxLength: 4096 })),
      runStrategy: Type.Optional(
        StringEnum(RUN_STRATEGIES, {
          description:
            "When the VM runs. Always (default): keep it running. RerunOnFailure: restart it when it fails, " +
            "not when the guest powers off. Once: run until the guest stops, then leave it. Manual: never " +
            "started or stopped by the operator on its own; start or stop it with kubectl vm start|stop, which set the " +
            "annotation vm.libvirt-operator.io/start-requested-at or …/stop-requested-at to the current time (the " +
            "later of the two wins). Halted: keep it stopped. Whatever the strategy, a VM with the annotation " +
            "vm.libvirt-operator.io/frozen (kubectl vm freeze) is stopped and stays stopped until it is removed. A VM made from spec.source takes its " +
            "template's or snapshotted VM's when it gives none.",
        }),
      ),
      paused: Type.Optional(
        Type.Boolean({ description: "Suspend the running domain (freeze its vCPUs); false resumes it." }),
      ),
      cpu: Type.Optional(Cpu),
      memory: Type.Optional(
        Quantity(
          "Memory of the VM. Required, except for a VM made from spec.source, which takes its template's or " +
            "snapshotted VM's.",
        ),
      ),
      uuid: Type.Optional(
        withRules(
          Type.String({
            description:
              "Domain UUID. Generated when absent (see status.uuid); immutable. One VM's only: a UUID " +
              "another VM already uses gets Admitted=False, reason UuidInUse.",
            pattern: "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
          }),
          immutable("spec.uuid"),
        ),
      ),
      hypervisor: Type.Optional(
        StringEnum(HYPERVISORS, {
          description:
            "Virtualisation technology: kvm (hardware, default) or qemu (full " +
            "emulation, TCG). The operator places the VM on a node that offers it. A VM made from " +
            "spec.source takes its template's or snapshotted VM's when it gives none.",
        }),
      ),
      nodeName: Type.Optional(
        ObjectName("Run on this node. A missing or unfit node is reported as ErrorUnschedulable."),
      ),
      nodeSelector: Type.Optional(
        Type.Record(Type.String(), Type.String(), {
          description: "Labels a node must carry to run the VM.",
          maxProperties: 32,
        }),
      ),
      disks: Type.Optional(NamedList(VmDisk, "VMDisks attached to the VM, keyed by name.", 64)),
      cdrom: Type.Optional(Cdrom),
      interfaces: Type.Optional(
        NamedList(
          Interface,
          "Network interfaces. When absent, the VM gets one virtio NIC on the default network with a " +
            "free IPv4 and IPv6 address; an empty list means no NIC.",
          16,
        ),
      ),
      boot: Type.Optional(Boot),
      shutdown: Type.Optional(Shutdown),
      source: Type.Optional(Source),
      snapshotPolicy: Type.Optional(SnapshotPolicy),
    },
    {
      description: "Desired state of the virtual machine.",
    },
  ),
  presenceImmutable("uuid", "spec.uuid"),
  presenceImmutable("source", "spec.source"),
  {
    rule: "has(self.memory) || has(self.source)",
    message: "spec.memory is required (only a VM made from spec.source may leave it out)",
    fieldPath: ".memory",
    reason: "FieldValueRequired",
  },
);

const InterfaceStatus = Type.Object(
  {
    name: Type.String({ description: "Interface name from spec.interfaces (or default)." }),
    mac: Type.Optional(Type.String({ description: "MAC address." })),
    ipv4: Type.Optional(Type.String({ description: "IPv4 address assigned from the network's pool." })),
    ipv6: Type.Optional(Type.String({ description: "IPv6 address assigned from the network's pool." })),
    network: Type.Optional(Type.String({ description: "libvirt network." })),
    linked: Type.Optional(Type.Boolean({ description: "Link state seen on the domain." })),
  },
  { description: "An interface as observed." },
);

const DiskStatus = Type.Object(
  {
    name: Type.String({ description: "Disk name from spec.disks." }),
    path: Type.Optional(Type.String({ description: "Volume path on the node." })),
    pool: Type.Optional(Type.String({ description: "Storage pool." })),
    provisionedSize: Type.Optional(Type.Integer({ description: "Provisioned size in bytes." })),
    actualSize: Type.Optional(Type.Integer({ description: "Allocated size in bytes." })),
  },
  { description: "A disk as observed." },
);

const SnapshotSummary = Type.Object(
  {
    name: Type.String({ description: "VMSnapshot name." }),
    displayName: Type.Optional(Type.String({ description: "The snapshot's spec.displayName." })),
    timestamp: Type.Optional(Type.Integer({ description: "Creation time, unix seconds." })),
    label: Type.Optional(Type.String({ description: "Description of the snapshot." })),
    isAutomatic: Type.Optional(Type.Boolean({ description: "Taken by spec.snapshotPolicy." })),
    isConsistent: Type.Optional(Type.Boolean({ description: "Guest file systems were quiesced." })),
    sticky: Type.Optional(Type.Boolean({ description: "Excluded from rotation." })),
    storedBytes: Type.Optional(Type.Integer({ description: "Bytes the snapshot holds." })),
  },
  { description: "A snapshot of this VM." },
);

const Statistics = Type.Object(
  {
    cpuGuestPercent: Type.Optional(Type.Number({ description: "CPU used by the guest, percent." })),
    cpuHypervisorPercent: Type.Optional(
      Type.Number({ description: "CPU overhead on the hypervisor, percent." }),
    ),
    cpuTotalPercent: Type.Optional(Type.Number({ description: "Total CPU in use, percent." })),
    memoryInstalledBytes: Type.Optional(Type.Integer({ description: "Memory configured, bytes." })),
    memoryUsedBytes: Type.Optional(
      Type.Integer({
        description:
          "Memory the guest uses, bytes: as its balloon driver reports it, else what its process holds in RAM; never more than it was given.",
      }),
    ),
    diskReadBytesPerSecond: Type.Optional(Type.Integer({ description: "Disk reads, bytes per second." })),
    diskWriteBytesPerSecond: Type.Optional(Type.Integer({ description: "Disk writes, bytes per second." })),
    networkRxBytesPerSecond: Type.Optional(Type.Integer({ description: "Received, bytes per second." })),
    networkTxBytesPerSecond: Type.Optional(Type.Integer({ description: "Transmitted, bytes per second." })),
    networkErrors: Type.Optional(Type.Integer({ description: "Receive and transmit errors since start." })),
    updatedAt: Type.Optional(Timestamp("When the figures were sampled.")),
  },
  {
    description: "Resource usage sampled at the agent's statistics interval.",
  },
);

export const VirtualMachineStatus = Type.Object(
  {
    observedGeneration: Type.Optional(ObservedGeneration()),
    printableStatus: Type.Optional(
      StringEnum(PRINTABLE_STATUSES, { description: "One word for humans: Running, Stopped, …" }),
    ),
    uuid: Type.Optional(Type.String({ description: "Domain UUID." })),
    hypervisorId: Type.Optional(Type.Integer({ description: "libvirt domain id while running." })),
    syncStatus: Type.Optional(
      StringEnum(SYNC_STATUSES, {
        description:
          "Whether the domain matches the spec: SYNC in step, SYNC_NOK out of step, " +
          "CREATED defined but not yet converged, OK/NOK for the last action.",
      }),
    ),
    hypervisorStatus: Type.Optional(
      StringEnum(HYPERVISOR_STATUSES, { description: "Domain state on the hypervisor." }),
    ),
    domainName: Type.Optional(Type.String({ description: "libvirt domain name, <namespace>_<name>." })),
    nodeName: Type.Optional(Type.String({ description: "Node the VM is placed on." })),
    interfaces: Type.Optional(
      NamedList(
        InterfaceStatus,
        "Interfaces with their MAC and the IPv4/IPv6 addresses reserved for them; the addresses stay the same across restarts.",
        16,
      ),
    ),
    disks: Type.Optional(Type.Array(DiskStatus, { description: "Disks with paths and sizes." })),
    snapshots: Type.Optional(
      Type.Array(SnapshotSummary, {
        description: "The VM's snapshots that were taken (VMSnapshots naming it), oldest first.",
      }),
    ),
    storedData: Type.Optional(
      Type.Integer({
        description: "Bytes the VM's disks take on their nodes plus what its snapshots stored.",
      }),
    ),
    statistics: Type.Optional(Statistics),
    statusChangedAt: Type.Optional(Timestamp("When hypervisorStatus last changed.")),
    lastOperation: Type.Optional(LastOperation),
    startCount: Type.Optional(
      Type.Integer({
        description:
          "How many times the operator has started the domain (runStrategy Once starts it only once).",
        minimum: 0,
      }),
    ),
    cdromBootedImage: Type.Optional(
      Type.String({
        description:
          "The CD-ROM image the VM last booted from once (cdrom.bootOnce); a new image boots once again.",
      }),
    ),
    restartRequestHandled: Type.Optional(
      Type.String({
        description:
          "The restart-requested-at annotation value the operator last acted on; a new value reboots once.",
      }),
    ),
    snapshotPolicy: Type.Optional(
      Type.Object(
        {
          lastScheduleTime: Type.Optional(Timestamp("When the policy last took a snapshot.")),
          nextScheduleTime: Type.Optional(Timestamp("When it takes the next.")),
          lastSuccessTime: Type.Optional(Timestamp("When its last snapshot succeeded.")),
          consecutiveFailures: Type.Optional(
            Type.Integer({
              description: "Automatic snapshots that failed in a row, the latest first.",
              minimum: 0,
            }),
          ),
          resumedWith: Type.Optional(
            Type.String({ description: "The spec.snapshotPolicy.resume value failures are counted from." }),
          ),
          resumedAt: Type.Optional(Timestamp("When that value was seen: earlier failures no longer count.")),
        },
        {
          description:
            "Where spec.snapshotPolicy stands (condition SnapshotPolicy says whether it is active).",
        },
      ),
    ),
    clonedFrom: Type.Optional(
      Type.Object(
        {
          snapshot: Type.String({ description: "The VMSnapshot the VM was made from." }),
          snapshotUID: Type.String({ description: "Its UID." }),
          vmName: Type.String({ description: "The VM the snapshot was taken of." }),
          spec: Type.Object(
            {},
            {
              description:
                "The hardware the clone has where its own spec says nothing: the snapshotted VM's spec at the " +
                "snapshot, without its UUID, MAC and IP addresses, its disks pointing to the clone's own.",
              "x-kubernetes-preserve-unknown-fields": true,
            },
          ),
        },
        {
          description:
            "For a VM made from spec.source.snapshot: where it came from and the hardware it took, kept when " +
            "the snapshot is deleted.",
        },
      ),
    ),
    template: Type.Optional(
      Type.Object(
        {
          name: Type.String({ description: "The VMTemplate the VM was made from." }),
          uid: Type.String({ description: "Its UID." }),
          generation: Type.Integer({ description: "The template's generation the VM was made from." }),
          spec: Type.Object(
            {},
            {
              description:
                "The hardware the VM has where its own spec says nothing: the template's at that generation, " +
                "its disks pointing to the VM's own.",
              "x-kubernetes-preserve-unknown-fields": true,
            },
          ),
          disks: Type.Array(
            Type.Object(
              {
                name: Type.String({ description: "The disk's name in the VM." }),
                vmDisk: Type.String({ description: "The VM's own VMDisk for it." }),
                size: Type.String({ description: "Its provisioned size." }),
                format: Type.String({ description: "Its format." }),
                from: Type.Optional(
                  Type.String({
                    description:
                      "What it is made from: a base VMDisk's name, or 'image' (the template's base for the " +
                      "VM's node). Absent: a blank disk.",
                  }),
                ),
                fullCopy: Type.Optional(Type.Boolean({ description: "A full copy, not a linked clone." })),
              },
              { description: "A disk the VM gets from the template." },
            ),
            { description: "The disks the VM gets from the template." },
          ),
        },
        {
          description:
            "For a VM made from spec.source.template: the template and generation it came from and what it " +
            "took; later edits of the template do not change it.",
        },
      ),
    ),
    refreshHandled: Type.Optional(
      Type.String({
        description:
          "The refresh-requested-at annotation value the node agent last answered: status and statistics " +
          "were read from the node after it was set.",
      }),
    ),
    guestFilesystems: Type.Optional(
      Type.Object(
        {
          frozen: Type.Boolean({
            description:
              "Whether the guest's file systems are frozen (writes held) by the operator's request.",
          }),
          requestHandled: Type.Optional(
            Type.String({
              description:
                "The last freeze or thaw request answered, as freeze@<time> or thaw@<time> (the value of the " +
                "fsfreeze-requested-at or fsthaw-requested-at annotation).",
            }),
          ),
          message: Type.Optional(
            Type.String({
              description: "Why the last request failed (no guest agent, the VM not running, …).",
            }),
          ),
        },
        {
          description:
            "File systems frozen through the QEMU guest agent (kubectl vm fsfreeze / fsthaw); the VM keeps " +
            "running. Not the same as the frozen annotation, which keeps the whole VM stopped.",
        },
      ),
    ),
    powerRequestHandled: Type.Optional(
      Type.String({
        description:
          "The last start or stop request of a Manual VM the operator carried out, as start@<time> or " +
          "stop@<time> (the value of the start-requested-at or stop-requested-at annotation).",
      }),
    ),
    conditions: Type.Optional(Conditions()),
  },
  { description: "Observed state of the virtual machine." },
);

export const VirtualMachineDefinition: KindDefinition = {
  ...VirtualMachineKind,
  description:
    "A virtual machine run by libvirt on a labelled node. Apply it and the operator places it, defines " +
    "the domain and keeps it as spec says; status mirrors what the hypervisor reports. " +
    `Names have at most ${HOST_NAME_MAX} characters (they become file names on the node).`,
  spec: VirtualMachineSpec,
  status: VirtualMachineStatus,
  rootRules: [nameFitsHost("VirtualMachine")],
  printerColumns: [
    { name: "Status", type: "string", jsonPath: ".status.printableStatus" },
    { name: "Node", type: "string", jsonPath: ".status.nodeName" },
    { name: "Ready", type: "string", jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
    { name: "IP", type: "string", jsonPath: ".status.interfaces[0].ipv4", priority: 1 },
    { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
  ],
};

export type VirtualMachineSpec = Static<typeof VirtualMachineSpec>;
export type VirtualMachineStatus = Static<typeof VirtualMachineStatus>;

export type VirtualMachine = CustomObject<VirtualMachineSpec, VirtualMachineStatus>;
