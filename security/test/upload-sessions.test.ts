/**
 * Finding 12 of issue 10, upload sessions: a registry node with
 * authentication on (a real process over a real nats-server). A burst of
 * session starts by one client is capped per client and per repository
 * with 429 TOOMANYREQUESTS; finishing a session frees its place; a session
 * that receives nothing for the idle time is removed (and no longer
 * counted), not kept for a week.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  cleanupStack,
  eventually,
  freePort,
  spawnMeridian,
  startTestNats,
  tempDir,
} from "../../testing/harness.js";

const cleanup = cleanupStack({ after });
const PER_CLIENT = 6;
const PER_REPOSITORY = 4;
const PASSWORD = "the admin's password for this test";
let url: string;
const auth = `Basic ${Buffer.from(`admin:${PASSWORD}`).toString("base64")}`;

before(async () => {
  const dir = tempDir(cleanup, "meridian-uploads-");
  const nats = await startTestNats(cleanup);
  const passwordFile = join(dir, "admin-password");
  writeFileSync(passwordFile, `${PASSWORD}\n`, { mode: 0o600 });
  const node = await spawnMeridian(cleanup, "node/server.js", {
    MERIDIAN_REGION: "up",
    MERIDIAN_DATA_DIR: dir,
    MERIDIAN_LISTEN_PORT: String(await freePort()),
    MERIDIAN_NATS_SERVERS: nats.url,
    MERIDIAN_STORAGE_FSYNC: "false",
    MERIDIAN_AUTH: "true",
    MERIDIAN_ADMIN_PASSWORD_FILE: passwordFile,
    MERIDIAN_UPLOAD_MAX_SESSIONS_PER_CLIENT: String(PER_CLIENT),
    MERIDIAN_UPLOAD_MAX_SESSIONS_PER_REPOSITORY: String(PER_REPOSITORY),
    // 3 s without a byte and a session is abandoned.
    MERIDIAN_UPLOAD_IDLE_MINUTES: "0.05",
    MERIDIAN_LOG_LEVEL: "warn",
  });
  url = node.info.registry!;
  await eventually(
    async () => (await fetch(`${url}/v2/`, { headers: { authorization: auth } })).status === 200,
    20_000,
    100,
  );
});

const start = (repo: string) =>
  fetch(`${url}/v2/${repo}/blobs/uploads/`, { method: "POST", headers: { authorization: auth } });

async function burst(repo: string, n: number): Promise<Response[]> {
  return Promise.all(Array.from({ length: n }, () => start(repo)));
}

async function refusal(res: Response): Promise<string> {
  assert.equal(res.status, 429);
  const body = (await res.json()) as { errors: Array<{ code: string; message: string }> };
  assert.equal(body.errors[0]!.code, "TOOMANYREQUESTS");
  return body.errors[0]!.message;
}

describe("upload sessions", () => {
  const open: string[] = [];

  test("a burst into one repository is capped per repository", async () => {
    const answers = await burst("burst/one", 30);
    const accepted = answers.filter((r) => r.status === 202);
    assert.equal(accepted.length, PER_REPOSITORY);
    for (const r of answers.filter((r) => r.status !== 202)) assert.match(await refusal(r), /repository/);
    open.push(...accepted.map((r) => r.headers.get("location")!));
  });

  test("the same client is capped across repositories", async () => {
    const answers = await burst("burst/two", 30);
    const accepted = answers.filter((r) => r.status === 202);
    assert.equal(accepted.length, PER_CLIENT - PER_REPOSITORY);
    for (const r of answers.filter((r) => r.status !== 202)) assert.match(await refusal(r), /client/);
    open.push(...accepted.map((r) => r.headers.get("location")!));
  });

  test("cancelling a session frees its place", async () => {
    const location = open.pop()!;
    const cancelled = await fetch(`${url}${location}`, {
      method: "DELETE",
      headers: { authorization: auth },
    });
    assert.equal(cancelled.status, 204);
    const again = await start("burst/two");
    assert.equal(again.status, 202);
    open.push(again.headers.get("location")!);
    await refusal(await start("burst/two"));
  });

  test("abandoned sessions expire after the idle time and stop counting", async () => {
    const first = open[0]!;
    assert.equal((await fetch(`${url}${first}`, { headers: { authorization: auth } })).status, 204);
    await eventually(
      async () => (await fetch(`${url}${first}`, { headers: { authorization: auth } })).status === 404,
      20_000,
      250,
    );
    const answers = await burst("burst/three", PER_CLIENT);
    assert.equal(answers.filter((r) => r.status === 202).length, PER_REPOSITORY);
  });
});
