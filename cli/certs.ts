/**
 * Certificates for a mesh's mutual TLS (protocol/mesh.ts): one mesh CA and,
 * per region R, `R.crt` + `R.key` signed by it, valid as both server and
 * client, for DNS:localhost, IP:127.0.0.1 and DNS:R. Made with the `openssl`
 * command line (Debian's `openssl` package; scripts/bootstrap.mjs ensures it).
 *
 *   <dir>/ca.crt  ca.key      the mesh CA (10 years)
 *   <dir>/R.crt   R.key       region R (825 days)
 *
 * Idempotent: what exists and still verifies against the CA is kept; a
 * missing or foreign region pair is (re)issued; a new CA reissues every
 * region. Keys are mode 0600. Files appear by rename, so an interrupted run
 * never leaves half a pair under its final name.
 *
 * `meridian certs --dir DIR NAME...` runs ensureMeshCerts for a deployment
 * that is not `meridian up` (deploy/compose's one-shot `certs` service):
 * the regions' names and the front door's identity (`front-door`), then
 * mesh.json's `tls` is `{ "ca": "DIR/ca.crt", "dir": "DIR" }`.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs, promisify } from "node:util";
import { parseRegion } from "../protocol/events.js";

const run = promisify(execFile);

export interface MeshCerts {
  /** The mesh CA certificate (mesh.json's `tls.ca`). */
  ca: string;
  caKey: string;
  /** The directory holding `R.crt` / `R.key` (mesh.json's `tls.dir`). */
  dir: string;
  regions: Record<string, { cert: string; key: string }>;
}

export const CERTS_USAGE = `  certs --dir DIR NAME...        the mesh CA and a certificate per NAME (the regions, and the front
                                  door's identity \`front-door\`) under DIR for mesh.json's tls; what
                                  exists and verifies is kept (deploy/compose's \`certs\` service)
`;

/** `meridian certs --dir DIR NAME...`: prints the files; exit 0, or 2 for a usage error. */
export async function certs(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { dir: { type: "string" } },
  });
  const bad = positionals.find((n) => !isName(n));
  if (values.dir === undefined || positionals.length === 0 || bad !== undefined) {
    process.stderr.write(
      `meridian certs: ${bad === undefined ? "--dir DIR and at least one NAME are required" : `"${bad}" is not a region name (lower-case letters, digits, dashes)`}\n${CERTS_USAGE}`,
    );
    return 2;
  }
  const made = await ensureMeshCerts(values.dir, positionals);
  process.stdout.write(`ca ${made.ca}\n`);
  for (const [name, pair] of Object.entries(made.regions)) process.stdout.write(`${name} ${pair.cert}\n`);
  return 0;
}

function isName(name: string): boolean {
  try {
    parseRegion(name);
    return true;
  } catch {
    return false;
  }
}

export async function ensureMeshCerts(dir: string, regions: readonly string[]): Promise<MeshCerts> {
  for (const r of regions) parseRegion(r);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const ca = join(dir, "ca.crt");
  const caKey = join(dir, "ca.key");
  let newCa = false;
  if (!existsSync(ca) || !existsSync(caKey)) {
    await issueCa(dir, ca, caKey);
    newCa = true;
  }
  const out: MeshCerts = { ca, caKey, dir, regions: {} };
  for (const region of regions) {
    const cert = join(dir, `${region}.crt`);
    const key = join(dir, `${region}.key`);
    const keep = !newCa && existsSync(cert) && existsSync(key) && (await pairVerifies(ca, cert, key));
    if (!keep) await issueRegion(dir, region, ca, caKey, cert, key);
    out.regions[region] = { cert, key };
  }
  return out;
}

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

async function issueCa(dir: string, cert: string, key: string): Promise<void> {
  const tmp = join(dir, `.tmp-${randomBytes(6).toString("hex")}`);
  const conf = `${tmp}.cnf`;
  await writeFile(
    conf,
    [
      "[req]",
      "distinguished_name = dn",
      "x509_extensions = ca",
      "prompt = no",
      "[dn]",
      "CN = Meridian mesh CA",
      "[ca]",
      "basicConstraints = critical, CA:TRUE",
      "keyUsage = critical, keyCertSign, cRLSign",
      "subjectKeyIdentifier = hash",
      "",
    ].join("\n"),
  );
  try {
    await run("openssl", [
      "req",
      "-x509",
      ...EC,
      "-keyout",
      `${tmp}.key`,
      "-out",
      `${tmp}.crt`,
      "-days",
      "3650",
      "-config",
      conf,
    ]);
    await chmod(`${tmp}.key`, 0o600);
    await rename(`${tmp}.key`, key);
    await rename(`${tmp}.crt`, cert);
  } finally {
    await Promise.all([conf, `${tmp}.key`, `${tmp}.crt`].map((f) => rm(f, { force: true })));
  }
}

async function issueRegion(
  dir: string,
  region: string,
  ca: string,
  caKey: string,
  cert: string,
  key: string,
): Promise<void> {
  const tmp = join(dir, `.tmp-${randomBytes(6).toString("hex")}`);
  const ext = `${tmp}.ext`;
  await writeFile(
    ext,
    [
      "basicConstraints = critical, CA:FALSE",
      "keyUsage = critical, digitalSignature, keyEncipherment",
      "extendedKeyUsage = serverAuth, clientAuth",
      `subjectAltName = DNS:localhost, IP:127.0.0.1, DNS:${region}`,
      "subjectKeyIdentifier = hash",
      "authorityKeyIdentifier = keyid",
      "",
    ].join("\n"),
  );
  try {
    await run("openssl", [
      "req",
      "-new",
      ...EC,
      "-keyout",
      `${tmp}.key`,
      "-out",
      `${tmp}.csr`,
      "-subj",
      `/CN=${region}`,
    ]);
    await run("openssl", [
      "x509",
      "-req",
      "-in",
      `${tmp}.csr`,
      "-CA",
      ca,
      "-CAkey",
      caKey,
      "-set_serial",
      `0x${randomBytes(16).toString("hex")}`,
      "-days",
      "825",
      "-extfile",
      ext,
      "-out",
      `${tmp}.crt`,
    ]);
    await chmod(`${tmp}.key`, 0o600);
    await rename(`${tmp}.key`, key);
    await rename(`${tmp}.crt`, cert);
  } finally {
    await Promise.all([ext, `${tmp}.csr`, `${tmp}.key`, `${tmp}.crt`].map((f) => rm(f, { force: true })));
  }
}

/** The certificate chains to the CA and belongs to the key. */
async function pairVerifies(ca: string, cert: string, key: string): Promise<boolean> {
  try {
    await run("openssl", ["verify", "-CAfile", ca, cert]);
    const [fromCert, fromKey] = await Promise.all([
      run("openssl", ["x509", "-in", cert, "-noout", "-pubkey"]),
      run("openssl", ["pkey", "-in", key, "-pubout"]),
    ]);
    return fromCert.stdout === fromKey.stdout;
  } catch {
    return false;
  }
}
