/**
 * The node over HTTPS with a certificate from the mesh CA (cli/certs.ts): it
 * answers clients that trust the CA, fails verification for those that do
 * not, gives plain HTTP nothing, serves skopeo (verifying, never
 * --tls-verify=false), and picks up a renewed certificate on SIGHUP.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { ensureMeshCerts, type MeshCerts } from "../../cli/certs.js";
import {
  cleanupStack,
  eventually,
  freePort,
  spawnMeridian,
  startTestNats,
  startTestNode,
  tempDir,
} from "../../testing/harness.js";
import { sha256 } from "../../testing/oci-client.js";
import { layoutBlobs, writeImageLayout } from "../../testing/oci-layout.js";
import { httpsGet, skopeoCertDir } from "../../testing/tls.js";
import { ConfigError, loadNodeConfig } from "../config.js";

const run = promisify(execFile);
const cleanup = cleanupStack({ after });
let nats: string;
let certs: MeshCerts;
let ca: Buffer;
let url: string;
let work: string;

before(async () => {
  work = tempDir(cleanup, "meridian-tls-");
  nats = (await startTestNats(cleanup)).url;
  certs = await ensureMeshCerts(join(work, "certs"), ["test"]);
  ca = readFileSync(certs.ca);
  const node = await startTestNode(cleanup, {
    nats,
    tls: { certFile: certs.regions.test!.cert, keyFile: certs.regions.test!.key },
  });
  url = node.url;
});

test("the node answers GET /v2/ over HTTPS to a client trusting the mesh CA, at 127.0.0.1 and localhost", async () => {
  assert.match(url, /^https:\/\/127\.0\.0\.1:\d+$/);
  const res = await httpsGet(`${url}/v2/`, ca);
  assert.equal(res.status, 200);
  assert.equal(res.headers["docker-distribution-api-version"], "registry/2.0");
  const byName = await httpsGet(`${url.replace("127.0.0.1", "localhost")}/v2/`, ca);
  assert.equal(byName.status, 200);
});

test("a client that does not trust the mesh CA fails verification; plain HTTP gets no answer", async () => {
  await assert.rejects(httpsGet(`${url}/v2/`), (err: Error & { code?: string }) => {
    assert.match(err.code ?? "", /UNABLE_TO_VERIFY|SELF_SIGNED/);
    return true;
  });
  await assert.rejects(fetch(`${url.replace(/^https:/, "http:")}/v2/`));
});

test("skopeo copies an image to and from the HTTPS node, verifying it with the mesh CA", async () => {
  const host = url.replace(/^https:\/\//, "");
  const certDir = skopeoCertDir(cleanup, certs.ca);
  const src = join(work, "src");
  const digest = writeImageLayout(src, "v1");
  await run("skopeo", ["copy", "--dest-cert-dir", certDir, `oci:${src}:v1`, `docker://${host}/tls/img:v1`]);
  const { stdout } = await run("skopeo", [
    "inspect",
    "--raw",
    "--cert-dir",
    certDir,
    `docker://${host}/tls/img:v1`,
  ]);
  assert.equal(sha256(Buffer.from(stdout)), digest);
  const out = join(work, "out");
  await run("skopeo", ["copy", "--src-cert-dir", certDir, `docker://${host}/tls/img:v1`, `oci:${out}:v1`]);
  assert.deepEqual(layoutBlobs(out), layoutBlobs(src));
  // Without the CA, skopeo verifies against the system's roots and refuses.
  await assert.rejects(
    run("skopeo", ["inspect", "--raw", `docker://${host}/tls/img:v1`]),
    /x509|certificate/,
  );
});

test("tls settings: certFile and keyFile both or neither, files that exist, also from the environment", () => {
  const cert = certs.regions.test!.cert;
  const key = certs.regions.test!.key;
  const base = { dataDir: work };
  assert.throws(
    () => loadNodeConfig({ overrides: { ...base, tls: { certFile: cert } } }),
    (err: Error) => err instanceof ConfigError && /certFile and keyFile go together/.test(err.message),
  );
  assert.throws(
    () =>
      loadNodeConfig({ overrides: { ...base, tls: { certFile: cert, keyFile: join(work, "nope.key") } } }),
    (err: Error) =>
      err instanceof ConfigError && /tls\.keyFile .*nope\.key: does not exist/.test(err.message),
  );
  const fromEnv = loadNodeConfig({
    env: { MERIDIAN_TLS_CERT_FILE: cert, MERIDIAN_TLS_KEY_FILE: key },
    overrides: base,
  });
  assert.deepEqual(fromEnv.tls, { certFile: cert, keyFile: key });
  assert.equal(loadNodeConfig({ overrides: base }).tls, undefined);
});

test("SIGHUP: a node process serves a renewed certificate on new connections without a restart", async () => {
  const dir = tempDir(cleanup, "meridian-tls-reload-");
  const other = await ensureMeshCerts(join(dir, "other-ca"), ["test"]);
  const certFile = join(dir, "served.crt");
  const keyFile = join(dir, "served.key");
  copyFileSync(certs.regions.test!.cert, certFile);
  copyFileSync(certs.regions.test!.key, keyFile);
  const node = await spawnMeridian(cleanup, "node/server.js", {
    MERIDIAN_REGION: "test",
    MERIDIAN_DATA_DIR: join(dir, "data"),
    MERIDIAN_LISTEN_PORT: String(await freePort()),
    MERIDIAN_NATS_SERVERS: nats,
    MERIDIAN_STORAGE_FSYNC: "false",
    MERIDIAN_TLS_CERT_FILE: certFile,
    MERIDIAN_TLS_KEY_FILE: keyFile,
  });
  const registry = node.info.registry!;
  assert.match(registry, /^https:\/\//);
  assert.equal((await httpsGet(`${registry}/v2/`, ca)).status, 200);
  // The renewal: a certificate (and key) from another CA, written over the served files.
  copyFileSync(other.regions.test!.cert, certFile);
  copyFileSync(other.regions.test!.key, keyFile);
  node.child.kill("SIGHUP");
  const otherCa = readFileSync(other.ca);
  await eventually(
    () =>
      httpsGet(`${registry}/v2/`, otherCa).then(
        (r) => r.status === 200,
        () => false,
      ),
    10_000,
    100,
  );
  await assert.rejects(httpsGet(`${registry}/v2/`, ca));
  assert.match(node.log(), /tls certificate reloaded/);
  assert.equal(node.child.exitCode, null, "SIGHUP did not stop the node");
});
