/**
 * A registry node as its own process with authentication on
 * (MERIDIAN_AUTH=true) and a real nats-server, for the identity and token
 * attacks (security/test/token-scope.test.ts, identity.test.ts): the admin
 * is created from the password file as `meridian up --auth` does, and the
 * mesh's token key sits in the data directory, where an attack that stole
 * it (or a test minting what a node would mint) can read it.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadTokenKeys } from "../mesh-client/token-key-file.js";
import type { TokenKeys } from "../mesh-client/tokens.js";
import {
  type After,
  freePort,
  type MeridianProcess,
  spawnMeridian,
  startTestNats,
  tempDir,
} from "../testing/harness.js";

export const ADMIN_PASSWORD = "admin-secret-pw";
export const REGION = "sec";

export interface AuthNode {
  url: string;
  nats: string;
  dataDir: string;
  process: MeridianProcess;
  /** The mesh's token keys, as the node reads them. */
  keys(): Promise<TokenKeys>;
  /** Call the admin API with `authorization` (Basic admin by default); the status and the JSON body. */
  admin(
    method: string,
    path: string,
    json?: unknown,
    authorization?: string,
  ): Promise<{ status: number; body: Record<string, unknown> }>;
  /** The value of a metric line of /metrics (`name{labels}`), 0 when absent. */
  metric(line: string): Promise<number>;
}

export const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
export const adminBasic = basic("admin", ADMIN_PASSWORD);

/** One call to a registry's admin API (`/admin/v1` + path), JSON in and out; a body that is not JSON reads as {}. */
export async function adminCall(
  registry: string,
  method: string,
  path: string,
  authorization: string,
  json?: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${registry}/admin/v1${path}`, {
    method,
    headers: { authorization, ...(json === undefined ? {} : { "content-type": "application/json" }) },
    ...(json === undefined ? {} : { body: JSON.stringify(json) }),
  });
  return { status: res.status, body: (await res.json().catch(() => ({}))) as Record<string, unknown> };
}

export async function startAuthNode(after: After): Promise<AuthNode> {
  const nats = await startTestNats(after);
  const dataDir = tempDir(after, "meridian-security-");
  const passwordFile = join(dataDir, "admin-password");
  writeFileSync(passwordFile, `${ADMIN_PASSWORD}\n`, { mode: 0o600 });
  const port = await freePort();
  const proc = await spawnMeridian(after, "node/server.js", {
    MERIDIAN_REGION: REGION,
    MERIDIAN_DATA_DIR: dataDir,
    MERIDIAN_LISTEN_PORT: String(port),
    MERIDIAN_NATS_SERVERS: nats.url,
    MERIDIAN_STORAGE_FSYNC: "false",
    MERIDIAN_AUTH: "true",
    MERIDIAN_ADMIN_PASSWORD_FILE: passwordFile,
    MERIDIAN_LOGIN_FAILURES: "1000",
    MERIDIAN_LOG_LEVEL: "warn",
  });
  const url = proc.info.registry!;
  const node: AuthNode = {
    url,
    nats: nats.url,
    dataDir,
    process: proc,
    keys: () =>
      loadTokenKeys({ tokenKeyFile: join(dataDir, "token-key.pem"), retiredKeyFiles: [], create: false }),
    async admin(method, path, json, authorization = adminBasic) {
      const res = await fetch(`${url}/admin/v1${path}`, {
        method,
        headers: {
          authorization,
          ...(json === undefined ? {} : { "content-type": "application/json" }),
        },
        ...(json === undefined ? {} : { body: JSON.stringify(json) }),
      });
      const text = await res.text();
      let body: Record<string, unknown> = {};
      try {
        body = text === "" ? {} : (JSON.parse(text) as Record<string, unknown>);
      } catch {
        body = { text };
      }
      return { status: res.status, body };
    },
    async metric(line) {
      const text = await (await fetch(`${url}/metrics`)).text();
      const found = text.split("\n").find((l) => l.startsWith(`${line} `));
      return found === undefined ? 0 : Number(found.slice(line.length + 1));
    },
  };
  // The admin is created from the password file shortly after start.
  for (let i = 0; i < 100; i++) {
    if ((await node.admin("GET", "/whoami")).status === 200) return node;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail("the admin was not created from the password file");
}

/** `status` of the call, with the body in the message when it differs. */
export function expectStatus(
  got: { status: number; body: Record<string, unknown> },
  status: number,
  what: string,
): Record<string, unknown> {
  assert.equal(got.status, status, `${what}: ${JSON.stringify(got.body)}`);
  return got.body;
}

/** A token from the node's token endpoint (undefined status checks left to the caller). */
export async function tokenFrom(
  url: string,
  scopes: string[],
  authorization?: string,
): Promise<{ status: number; token?: string }> {
  const q = new URLSearchParams({ service: "meridian" });
  for (const s of scopes) q.append("scope", s);
  const res = await fetch(`${url}/auth/token?${q}`, {
    headers: authorization === undefined ? {} : { authorization },
  });
  const body = (await res.json().catch(() => ({}))) as { token?: string };
  return { status: res.status, ...(body.token === undefined ? {} : { token: body.token }) };
}
