// Certificates and keys for the local kube-apiserver, made once with openssl (EC P-256).
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "./tools.ts";

export interface Pki {
  dir: string;
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  adminCert: string;
  adminKey: string;
  saKey: string;
  saPub: string;
  controllerManagerCert: string;
  controllerManagerKey: string;
  schedulerCert: string;
  schedulerKey: string;
}

export function pkiPaths(dir: string): Pki {
  const p = (f: string) => join(dir, f);
  return {
    dir,
    caCert: p("ca.crt"),
    caKey: p("ca.key"),
    serverCert: p("apiserver.crt"),
    serverKey: p("apiserver.key"),
    adminCert: p("admin.crt"),
    adminKey: p("admin.key"),
    saKey: p("sa.key"),
    saPub: p("sa.pub"),
    controllerManagerCert: p("kube-controller-manager.crt"),
    controllerManagerKey: p("kube-controller-manager.key"),
    schedulerCert: p("kube-scheduler.crt"),
    schedulerKey: p("kube-scheduler.key"),
  };
}

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
const DAYS = "3650";

async function signed(pki: Pki, name: string, subject: string, extensions: string) {
  const key = join(pki.dir, `${name}.key`);
  const csr = join(pki.dir, `${name}.csr`);
  const ext = join(pki.dir, `${name}.ext`);
  await writeFile(ext, extensions);
  await run("openssl", ["req", ...EC, "-keyout", key, "-out", csr, "-subj", subject]);
  await run("openssl", [
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    pki.caCert,
    "-CAkey",
    pki.caKey,
    "-CAcreateserial",
    "-days",
    DAYS,
    "-out",
    join(pki.dir, `${name}.crt`),
    "-extfile",
    ext,
  ]);
}

/** Creates whatever of the PKI is missing; existing files are kept (restarts reuse them). */
export async function ensurePki(dir: string): Promise<Pki> {
  const pki = pkiPaths(dir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (!existsSync(pki.caCert)) {
    await run("openssl", [
      "req",
      "-x509",
      ...EC,
      "-keyout",
      pki.caKey,
      "-out",
      pki.caCert,
      "-days",
      DAYS,
      "-subj",
      "/CN=libvirt-operator-local-ca",
    ]);
  }
  if (!existsSync(pki.serverCert)) {
    await signed(
      pki,
      "apiserver",
      "/CN=kube-apiserver",
      "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default," +
        "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n" +
        "extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
    );
  }
  if (!existsSync(pki.adminCert)) {
    await signed(pki, "admin", "/O=system:masters/CN=kubernetes-admin", "extendedKeyUsage=clientAuth\n");
  }
  // kube-controller-manager and kube-scheduler authenticate as the users their bootstrap RBAC
  // roles are bound to (system:kube-controller-manager, system:kube-scheduler), not as admin.
  // The same certificate serves their loopback HTTPS port (/healthz), so it is signed for both.
  const component = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=clientAuth,serverAuth\n";
  if (!existsSync(pki.controllerManagerCert)) {
    await signed(pki, "kube-controller-manager", "/CN=system:kube-controller-manager", component);
  }
  if (!existsSync(pki.schedulerCert)) {
    await signed(pki, "kube-scheduler", "/CN=system:kube-scheduler", component);
  }
  if (!existsSync(pki.saKey)) {
    await run("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", pki.saKey]);
    await run("openssl", ["ec", "-in", pki.saKey, "-pubout", "-out", pki.saPub]);
  }
  return pki;
}

/**
 * A client certificate NAME.crt/NAME.key for SUBJECT, made once: the local node's kubelet
 * (system:node:<name> in system:nodes, so the Node authorizer and NodeRestriction apply to it)
 * and kube-proxy (system:kube-proxy, bound to system:node-proxier by the bootstrap RBAC).
 */
export async function ensureClientCert(
  pki: Pki,
  name: string,
  subject: string,
): Promise<{ cert: string; key: string }> {
  const cert = join(pki.dir, `${name}.crt`);
  if (!existsSync(cert)) await signed(pki, name, subject, "extendedKeyUsage=clientAuth\n");
  return { cert, key: join(pki.dir, `${name}.key`) };
}
