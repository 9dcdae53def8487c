// Host paths a VM names (CD-ROM image, kernel, initrd): the media directory rules, judged on the
// text and on the resolved path, and resolution against a real directory tree with symlinks.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import type { VirtualMachine } from "../../../src/api/virtualmachine.ts";
import {
  agentStateDirsOf,
  isWithin,
  judgeRequested,
  judgeResolved,
  type MediaEnvironment,
  type MediaRules,
  mediaDirsFromEnv,
  resolveHostMedia,
} from "../../../src/controllers/node/media-paths.ts";

const rules: MediaRules = {
  nodeName: "n1",
  mediaDirs: ["/srv/media"],
  forbidden: [
    { dir: "/srv/media/pool", what: "storage pool p" },
    { dir: "/var/lib/libvirt/libvirt-operator", what: "storage pool libvirt-operator" },
    { dir: "/var/lib/libvirt-operator/images", what: "an image import directory" },
  ],
};

function vmWith(spec: Partial<VirtualMachine["spec"]>): VirtualMachine {
  return {
    apiVersion: "vm.libvirt-operator.io/v1alpha1",
    kind: "VirtualMachine",
    metadata: { name: "vm", namespace: "ns" },
    spec: { memory: "1Gi", ...spec },
  };
}

describe("media paths: the rules", () => {
  it("MEDIA_DIRS: absolute directories, ':'-separated; none by default", () => {
    assert.deepEqual(mediaDirsFromEnv(undefined), []);
    assert.deepEqual(mediaDirsFromEnv(""), []);
    assert.deepEqual(mediaDirsFromEnv("/srv/media/:relative: /iso//x "), ["/srv/media/", "/iso/x"]);
  });

  it("a directory holds itself and what is below it, never a sibling with the same prefix", () => {
    assert.ok(isWithin("/srv/media/a.iso", "/srv/media"));
    assert.ok(isWithin("/srv/media", "/srv/media/"));
    assert.ok(!isWithin("/srv/media-other/a.iso", "/srv/media"));
    assert.ok(isWithin("/anything", "/"));
  });

  it("on the text: relative, NUL, '..' and paths outside every media directory are refused", () => {
    const msg = (path: string) => judgeRequested("spec.boot.kernel", path, rules)?.message;
    assert.match(msg("vmlinuz") ?? "", /^spec\.boot\.kernel: "vmlinuz" is not an absolute path/);
    assert.match(msg("/srv/media/a\0b") ?? "", /NUL/);
    assert.match(msg("/srv/media/../../etc/shadow") ?? "", /'\.\.' segment/);
    assert.match(
      msg("/etc/shadow") ?? "",
      /^spec\.boot\.kernel: \/etc\/shadow is not inside a media directory of node n1 \(\/srv\/media\).*spec\.cdrom\.diskRef/,
    );
    assert.match(
      judgeRequested("spec.cdrom.image", "/srv/media/a.iso", { ...rules, mediaDirs: [] })?.message ?? "",
      /\(none are configured\)/,
    );
    assert.equal(msg("/srv/media/sub//vmlinuz"), undefined);
    assert.equal(judgeRequested("spec.cdrom.image", "/srv/media/a.iso", rules)?.reason, undefined);
  });

  it("on the resolved path: pools, import directories and outside targets are refused", () => {
    const judge = (requested: string, resolved: string) =>
      judgeResolved("spec.cdrom.image", requested, resolved, rules);
    assert.equal(judge("/srv/media/a.iso", "/srv/media/a.iso"), undefined);
    assert.equal(judge("/srv/media/link.iso", "/srv/media/real/a.iso"), undefined);
    const pool = judge("/srv/media/pool/ns_d.img", "/srv/media/pool/ns_d.img");
    assert.equal(pool?.reason, "HostPathRefused");
    assert.equal(pool?.field, "spec.cdrom.image");
    assert.match(pool?.message ?? "", /lies inside storage pool p;/);
    assert.match(
      judge("/srv/media/evil", "/var/lib/libvirt/libvirt-operator/other_disk.qcow2")?.message ?? "",
      /^spec\.cdrom\.image: \/srv\/media\/evil lies inside storage pool libvirt-operator \(after following symlinks\)/,
    );
    assert.match(
      judge("/srv/media/imp", "/var/lib/libvirt-operator/images/x.iso")?.message ?? "",
      /an image import directory/,
    );
    const outside = judge("/srv/media/evil", "/etc/shadow")?.message ?? "";
    assert.match(outside, /resolves \(after following symlinks\) to a file outside the media directories/);
    assert.ok(!outside.includes("/etc/shadow"), "the target of an admin's symlink is not told");
  });

  it("the agent's own state: console logs, credentials, libvirt's sockets and domain state, snapshots' memory", () => {
    const dirs = agentStateDirsOf(
      { KUBECONFIG: "/etc/agent/kubeconfig", SNAPSHOT_MEMORY_DIR: "/srv/memory" },
      "/var/log/libvirt/qemu",
    );
    assert.deepEqual(dirs, [
      "/var/log/libvirt/qemu",
      "/var/run/libvirt",
      "/run/libvirt",
      "/var/lib/libvirt/qemu",
      "/var/run/secrets",
      "/run/secrets",
      "/var/lib/kubelet",
      "/etc/kubernetes",
      "/proc",
      "/sys",
      "/dev",
      "/etc/agent",
      "/srv/memory",
    ]);
    assert.ok(agentStateDirsOf({}, "/c").includes("/var/lib/libvirt/libvirt-operator-snapshots"));
  });
});

describe("media paths: resolved on a real file system", () => {
  const root = realpathSync(mkdtempSync(join(tmpdir(), "lvo-media-")));
  const media = join(root, "media");
  const pool = join(media, "pool");
  mkdirSync(join(media, "real"), { recursive: true });
  mkdirSync(pool);
  writeFileSync(join(media, "real", "disc.iso"), "iso");
  writeFileSync(join(media, "vmlinuz"), "kernel");
  writeFileSync(join(pool, "ns_d.img"), "volume");
  writeFileSync(join(root, "secret"), "secret");
  symlinkSync(join(media, "real", "disc.iso"), join(media, "link.iso"));
  symlinkSync(join(root, "secret"), join(media, "escape"));
  symlinkSync(join(pool, "ns_d.img"), join(media, "vol"));
  symlinkSync(root, join(media, "up"));
  const env: MediaEnvironment = {
    nodeName: "n1",
    mediaDirs: [media],
    importDirs: [],
    agentStateDirs: [],
    poolDirs: async () => [{ pool: "p", dir: pool }],
  };
  after(() => rmSync(root, { recursive: true, force: true }));

  it("a symlink inside the media directory is passed on resolved", async () => {
    const got = await resolveHostMedia(
      vmWith({
        cdrom: { image: join(media, "link.iso") },
        boot: { kernel: join(media, "vmlinuz"), initrd: join(media, "real", "disc.iso") },
      }),
      env,
    );
    assert.deepEqual(got, {
      media: {
        cdromImage: join(media, "real", "disc.iso"),
        kernel: join(media, "vmlinuz"),
        initrd: join(media, "real", "disc.iso"),
      },
    });
  });

  it("an empty drive names no path", async () => {
    assert.deepEqual(await resolveHostMedia(vmWith({ cdrom: { image: "" } }), env), { media: {} });
  });

  it("symlinks out of it, into a pool, through a linked parent; missing files and directories: refused", async () => {
    const refusal = async (spec: Partial<VirtualMachine["spec"]>) => {
      const got = await resolveHostMedia(vmWith(spec), env);
      assert.ok("refused" in got, `refused: ${JSON.stringify(spec)}`);
      return got.refused.message;
    };
    assert.match(await refusal({ boot: { kernel: join(media, "escape") } }), /outside the media directories/);
    assert.match(
      await refusal({ boot: { initrd: join(media, "vol") } }),
      /^spec\.boot\.initrd: .* storage pool p/,
    );
    assert.match(await refusal({ cdrom: { image: join(media, "up", "secret") } }), /outside the media/);
    assert.match(await refusal({ cdrom: { image: join(media, "nope.iso") } }), /does not exist on node n1/);
    assert.match(await refusal({ cdrom: { image: join(media, "real") } }), /is not a regular file/);
    assert.match(
      await refusal({ cdrom: { image: join(root, "secret") } }),
      /is not inside a media directory/,
    );
  });

  it("with no media directories configured, every host path is refused", async () => {
    const got = await resolveHostMedia(vmWith({ boot: { kernel: join(media, "vmlinuz") } }), {
      ...env,
      mediaDirs: [],
    });
    assert.ok("refused" in got && /none are configured/.test(got.refused.message));
  });
});
