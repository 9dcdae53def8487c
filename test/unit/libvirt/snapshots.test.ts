// The wire shapes of the freeze/thaw and save/restore procedures (remote_protocol.x) and the
// guest-agent error classifier, with the messages libvirt 9.0 really sends (seen in
// test/integration/libvirt-snapshots.test.ts).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { PROCEDURE_CLASS } from "../../../src/hypervisor/libvirt/deadlines.ts";
import {
  CallTimeoutError,
  ErrorCode,
  isGuestAgentUnavailable,
  LibvirtError,
} from "../../../src/hypervisor/libvirt/errors.ts";
import { FSFREEZE_MOUNTPOINTS_MAX, P } from "../../../src/hypervisor/libvirt/protocol.ts";
import { decode, encode } from "../../../src/hypervisor/libvirt/xdr.ts";

const dom = { name: "vm", uuid: Buffer.alloc(16, 0xab), id: 3 };
/** remote_nonnull_domain for `vm`: name (length, "vm", padding), uuid (16 bytes), id. */
const domBytes = [0, 0, 0, 2, 0x76, 0x6d, 0, 0, ...Array(16).fill(0xab), 0, 0, 0, 3];

describe("freeze/thaw and save/restore on the wire", () => {
  it("uses remote_protocol.x's procedure numbers", () => {
    assert.equal(P.DomainSaveFlags.number, 232);
    assert.equal(P.DomainRestoreFlags.number, 233);
    assert.equal(P.DomainSaveImageGetXmlDesc.number, 235);
    assert.equal(P.DomainFsFreeze.number, 335);
    assert.equal(P.DomainFsThaw.number, 336);
  });

  it("sends the mount points as a counted string array between the domain and the flags", () => {
    const bytes = encode(P.DomainFsFreeze.args, { dom, mountpoints: ["/data"], flags: 0 });
    assert.deepEqual(
      [...bytes],
      [...domBytes, 0, 0, 0, 1, 0, 0, 0, 5, ...Buffer.from("/data"), 0, 0, 0, 0, 0, 0, 0],
    );
    assert.deepEqual(
      [...encode(P.DomainFsThaw.args, { dom, mountpoints: [], flags: 2 })],
      [...domBytes, 0, 0, 0, 0, 0, 0, 0, 2],
    );
    const tooMany = Array.from({ length: FSFREEZE_MOUNTPOINTS_MAX + 1 }, (_, i) => `/m${i}`);
    assert.throws(() => encode(P.DomainFsFreeze.args, { dom, mountpoints: tooMany, flags: 0 }), RangeError);
    assert.deepEqual(decode(P.DomainFsFreeze.ret, Buffer.from([0, 0, 0, 2])), { filesystems: 2 });
  });

  it("sends a missing dxml as a null remote_string", () => {
    const save = encode(P.DomainSaveFlags.args, { dom, to: "/s", dxml: null, flags: 4 });
    assert.deepEqual([...save], [...domBytes, 0, 0, 0, 2, 0x2f, 0x73, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4]);
    const restore = encode(P.DomainRestoreFlags.args, { from: "/s", dxml: "<d/>", flags: 2 });
    assert.deepEqual(
      [...restore],
      [0, 0, 0, 2, 0x2f, 0x73, 0, 0, 0, 0, 0, 1, 0, 0, 0, 4, ...Buffer.from("<d/>"), 0, 0, 0, 2],
    );
  });

  it("gives the long calls a deadline class that the caller can stretch", () => {
    assert.equal(PROCEDURE_CLASS["domain-save-flags"], "long");
    assert.equal(PROCEDURE_CLASS["domain-restore-flags"], "long");
    assert.equal(PROCEDURE_CLASS["domain-save-image-get-xml-desc"], "query");
    assert.equal(PROCEDURE_CLASS["domain-fsfreeze"], "lifecycle");
    assert.equal(PROCEDURE_CLASS["domain-fsthaw"], "lifecycle");
  });
});

const libvirtError = (code: number, message: string) =>
  new LibvirtError(code, 10 /* VIR_FROM_QEMU */, 2, message, "domain-fsfreeze");

describe("isGuestAgentUnavailable", () => {
  it("is true without an agent channel, for an agent not connected, not answering, unsynced or still busy", () => {
    for (const err of [
      libvirtError(ErrorCode.ArgumentUnsupported, "argument unsupported: QEMU guest agent is not configured"),
      libvirtError(
        ErrorCode.AgentUnresponsive,
        "Guest agent is not responding: QEMU guest agent is not connected",
      ),
      libvirtError(
        ErrorCode.AgentUnresponsive,
        "Guest agent is not responding: Guest agent not available for now",
      ),
      libvirtError(ErrorCode.AgentUnresponsive, "QEMU guest agent is not available due to an error"),
      libvirtError(ErrorCode.AgentUnsynced, "guest agent replied with wrong id to guest-sync command"),
      libvirtError(ErrorCode.AgentCommandTimeout, "Guest agent command timed out"),
      libvirtError(
        ErrorCode.OperationUnsupported,
        "Operation not supported: QEMU guest agent is not configured",
      ),
      libvirtError(
        ErrorCode.OperationTimeout,
        "Timed out during operation: cannot acquire state change lock (held by agent=remoteDispatchDomainFSFreeze)",
      ),
      new CallTimeoutError("domain-fsfreeze timed out", { procedure: "domain-fsfreeze", deadlineMs: 5 }),
    ]) {
      assert.equal(isGuestAgentUnavailable(err), true, err.message);
    }
  });

  it("is false for what libvirt or the agent refused, a stopped domain, a busy monitor, other deadlines", () => {
    for (const err of [
      libvirtError(
        ErrorCode.ArgumentUnsupported,
        "argument unsupported: specifying mountpoints is not supported",
      ),
      libvirtError(ErrorCode.OperationInvalid, "Requested operation is not valid: domain is not running"),
      libvirtError(
        ErrorCode.InternalError,
        "internal error: unable to execute QEMU agent command 'guest-fsfreeze-freeze': Command has been disabled",
      ),
      libvirtError(ErrorCode.NoDomain, "Domain not found"),
      libvirtError(
        ErrorCode.OperationTimeout,
        "Timed out during operation: cannot acquire state change lock (held by monitor=remoteDispatchDomainSuspend)",
      ),
      new CallTimeoutError("domain-snapshot-create-xml timed out", {
        procedure: "domain-snapshot-create-xml",
      }),
      new Error("QEMU guest agent is not configured"),
      undefined,
    ]) {
      assert.equal(isGuestAgentUnavailable(err), false, String(err?.message));
    }
  });
});
