/**
 * What the login and audit attack files share: a registry node as a real
 * process with authentication on (its own nats-server), its admin, users,
 * a public image to pull, and readers of its audit log and metrics.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { type After, spawnMeridian, startTestNats, tempDir } from "../../testing/harness.js";
import { OCI_CONFIG, OCI_MANIFEST, OciClient } from "../../testing/oci-client.js";

export const ADMIN_PASSWORD = "admin-secret-pw";

export const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

export interface AuthNode {
  url: string;
  admin: OciClient;
  /** The node's log so far (stderr). */
  log(): string;
}

/** A node process with MERIDIAN_AUTH=true and an `admin`; `env` adds settings. */
export async function startAuthNode(after: After, env: Record<string, string> = {}): Promise<AuthNode> {
  const nats = await startTestNats(after);
  const dir = tempDir(after, "meridian-sec-");
  const passwordFile = join(dir, "admin-password");
  writeFileSync(passwordFile, `${ADMIN_PASSWORD}\n`, { mode: 0o600 });
  const node = await spawnMeridian(after, "node/server.js", {
    MERIDIAN_REGION: "sec",
    MERIDIAN_DATA_DIR: dir,
    MERIDIAN_LISTEN_PORT: "0",
    MERIDIAN_NATS_SERVERS: nats.url,
    MERIDIAN_STORAGE_FSYNC: "false",
    MERIDIAN_AUTH: "true",
    MERIDIAN_ADMIN_PASSWORD_FILE: passwordFile,
    MERIDIAN_LOG_LEVEL: process.env.MERIDIAN_TEST_LOG ?? "warn",
    ...env,
  });
  const url = node.info.registry!;
  const admin = new OciClient(url, basic("admin", ADMIN_PASSWORD));
  // The admin is created once the log is reachable.
  for (let i = 0; i < 100; i++) {
    if ((await admin.fetch("/admin/v1/whoami")).status === 200) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url, admin, log: node.log };
}

export async function adminCall(client: OciClient, method: string, path: string, json?: unknown) {
  const res = await client.fetch(`/admin/v1${path}`, {
    method,
    ...(json === undefined
      ? {}
      : { body: JSON.stringify(json), headers: { "content-type": "application/json" } }),
  });
  const text = await res.text();
  assert.ok(res.status < 300, `${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text) as Record<string, unknown>;
}

export async function createUser(admin: OciClient, name: string, password: string): Promise<void> {
  await adminCall(admin, "PUT", `/users/${name}`, { password });
}

/** A public project `project` with a one-layer image at `repo:tag`. */
export async function seedPublic(admin: OciClient, repo: string, tag: string): Promise<void> {
  await adminCall(admin, "PUT", `/projects/${repo.split("/")[0]}`, { public: true });
  const config = await admin.pushBlob(repo, Buffer.from(`{"seed":"${repo}"}`), OCI_CONFIG);
  const layer = await admin.pushBlob(repo, Buffer.from(`layer of ${repo}`));
  const put = await admin.pushManifest(repo, tag, {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config,
    layers: [layer],
  });
  assert.equal(put.response.status, 201);
}

/** A metric's value from /metrics (summed over its label sets); 0 when absent. */
export async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n"))
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) sum += Number(line.split(" ").pop());
  return sum;
}

export type AuditLine = Record<string, unknown>;

/** The node's audit records matching `query` (GET /admin/v1/audit), and the answer's size in bytes. */
export async function audit(
  admin: OciClient,
  query: string,
): Promise<{ records: AuditLine[]; bytes: number }> {
  const res = await admin.fetch(`/admin/v1/audit?${query}`);
  const text = await res.text();
  assert.equal(res.status, 200, text);
  const body = JSON.parse(text) as { records: AuditLine[] };
  return { records: body.records, bytes: Buffer.byteLength(text) };
}

/** Median of `runs` timings of `fn`, in milliseconds. */
export async function medianMs(runs: number, fn: () => Promise<unknown>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    await fn();
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}
