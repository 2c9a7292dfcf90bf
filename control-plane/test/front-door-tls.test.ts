/**
 * `meridian up --tls`: every registry and the front door over HTTPS with the
 * mesh's certificates. The front door proxies to and probes its https://
 * regions under the mesh CA, skopeo goes through it verifying the CA, and a
 * peer's automatic failover reaches its region's HTTPS admin API.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import https from "node:https";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { pino } from "pino";
import { parseMesh } from "../../protocol/mesh.js";
import { cleanupStack, eventually, runCli, tempDir } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";
import { sha256 } from "../../testing/oci-client.js";
import { layoutBlobs, writeImageLayout } from "../../testing/oci-layout.js";
import { httpsGet, skopeoCertDir } from "../../testing/tls.js";
import { startAutoFailover } from "../auto-failover.js";
import { FrontDoorConfigError, loadFrontDoorConfig } from "../front-door-config.js";
import type { PeerHealth } from "../heartbeat.js";
import { registryAgent } from "../registry-http.js";

const run = promisify(execFile);
const cleanup = cleanupStack({ after });
let mesh: RunningMesh;
let ca: Buffer;
let url: string;

interface Healthz {
  regions: Array<{ region: string; up: boolean; lastError: string | null }>;
}

before(async () => {
  mesh = await startMesh(cleanup, ["a", "b"], undefined, ["--tls"]);
  ca = readFileSync(join(mesh.dataDir, "certs", "ca.crt"));
  url = mesh.frontDoor!;
});

test("up --tls: the registries, mesh.json and the front door are https://", () => {
  assert.match(url, /^https:\/\/127\.0\.0\.1:\d+$/);
  for (const r of mesh.regions.values()) assert.match(r.registry, /^https:\/\/127\.0\.0\.1:\d+$/);
  const file = parseMesh(JSON.parse(readFileSync(join(mesh.dataDir, "mesh.json"), "utf8")));
  for (const r of file.regions) assert.match(r.registry, /^https:\/\//);
});

test("front door tls settings: certFile and keyFile both or neither, files that exist", () => {
  const certs = join(mesh.dataDir, "certs");
  const env = { MERIDIAN_MESH: join(mesh.dataDir, "mesh.json") };
  const config = loadFrontDoorConfig({
    env: {
      ...env,
      MERIDIAN_TLS_CERT_FILE: join(certs, "front-door.crt"),
      MERIDIAN_TLS_KEY_FILE: join(certs, "front-door.key"),
    },
  });
  assert.equal(config.tls.certFile, join(certs, "front-door.crt"));
  assert.equal(config.tls.keyFile, join(certs, "front-door.key"));
  assert.throws(
    () => loadFrontDoorConfig({ env: { ...env, MERIDIAN_TLS_CERT_FILE: join(certs, "front-door.crt") } }),
    (err: Error) =>
      err instanceof FrontDoorConfigError && /certFile and keyFile go together/.test(err.message),
  );
  assert.throws(
    () => loadFrontDoorConfig({ env, overrides: { tls: { certFile: "nope.crt", keyFile: "nope.key" } } }),
    (err: Error) =>
      err instanceof FrontDoorConfigError && /tls\.certFile .*nope\.crt: does not exist/.test(err.message),
  );
  assert.equal(loadFrontDoorConfig({ env }).tls.certFile, undefined);
});

test("the front door serves HTTPS and routes to its HTTPS regions, trusting the mesh CA", async () => {
  // Up means the probes (GET /v2/ on each region's registry) verified its certificate.
  await eventually(
    async () => {
      const h = JSON.parse((await httpsGet(`${url}/healthz`, ca)).body) as Healthz;
      return h.regions.every((r) => r.up);
    },
    30_000,
    100,
  );
  for (const region of ["a", "b"]) {
    const res = await new Promise<{ status: number; region: unknown }>((resolve, reject) => {
      https
        .get(`${url}/v2/`, { ca, agent: false, headers: { "meridian-client-region": region } }, (r) => {
          r.resume();
          r.once("end", () => resolve({ status: r.statusCode!, region: r.headers["meridian-region"] }));
        })
        .once("error", reject);
    });
    assert.deepEqual(res, { status: 200, region });
  }
  await assert.rejects(httpsGet(`${url}/v2/`), /certificate/);
  await assert.rejects(fetch(`${url.replace(/^https:/, "http:")}/v2/`));
});

test("skopeo pushes and pulls through the HTTPS front door, verifying the mesh CA", async () => {
  const work = tempDir(cleanup, "meridian-fd-tls-");
  const certDir = skopeoCertDir(cleanup, join(mesh.dataDir, "certs", "ca.crt"));
  const host = url.replace(/^https:\/\//, "");
  const src = join(work, "src");
  const digest = writeImageLayout(src, "v1");
  await run("skopeo", ["copy", "--dest-cert-dir", certDir, `oci:${src}:v1`, `docker://${host}/fd/tls:v1`]);
  const { stdout } = await run("skopeo", [
    "inspect",
    "--raw",
    "--cert-dir",
    certDir,
    `docker://${host}/fd/tls:v1`,
  ]);
  assert.equal(sha256(Buffer.from(stdout)), digest);
  const out = join(work, "out");
  await run("skopeo", ["copy", "--src-cert-dir", certDir, `docker://${host}/fd/tls:v1`, `oci:${out}:v1`]);
  assert.deepEqual(layoutBlobs(out), layoutBlobs(src));
});

test("automatic failover calls an HTTPS registry's admin API under the mesh CA (and fails without it)", async () => {
  const file = parseMesh(JSON.parse(readFileSync(join(mesh.dataDir, "mesh.json"), "utf8")));
  const registry = file.regions.find((r) => r.name === "a")!.registry;
  // b dark for a minute as this peer sees it: with two regions a (the successor) acts alone.
  const health = (): PeerHealth[] => [
    {
      peer: "b",
      state: "down",
      misses: 9,
      rttMs: undefined,
      lastSeenAt: Date.now() - 60_000,
      lastError: "test",
      applied: {},
      epoch: 0,
      peers: [],
    },
  ];
  const attempt = async (agent: https.Agent) => {
    const lines: Array<{ msg: string; err?: { code?: string; message?: string } }> = [];
    const logger = pino({ level: "info" }, { write: (line: string) => lines.push(JSON.parse(line)) });
    const stop = startAutoFailover({
      self: "a",
      regions: ["a", "b"],
      registry,
      agent,
      afterMs: 1_000,
      everyMs: 100,
      health,
      logger,
    });
    try {
      await eventually(() => lines.length > 0, 15_000, 50);
    } finally {
      stop();
      agent.destroy();
    }
    return lines[0]!;
  };
  // The node answered (done, or refused because its peer still sees b): TLS held.
  const trusted = await attempt(registryAgent(file, registry) as https.Agent);
  assert.match(trusted.msg, /automatic failover (done|refused)/);
  const untrusted = await attempt(new https.Agent());
  assert.match(untrusted.msg, /automatic failover failed/);
  assert.match(`${untrusted.err?.code} ${untrusted.err?.message}`, /UNABLE_TO_VERIFY|certificate/);
});

test("the admin commands verify HTTPS registries under the mesh CA, with no NODE_EXTRA_CA_CERTS", async () => {
  // (NODE_EXTRA_CA_CERTS, where a machine sets it, names its system bundle, which lacks the mesh CA.)
  const r = await runCli(["tag", "rules", "--json", "--data", mesh.dataDir]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(Array.isArray(JSON.parse(r.stdout).rules), r.stdout);
});
