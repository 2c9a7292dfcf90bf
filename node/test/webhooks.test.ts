/**
 * Webhooks as CloudEvents (issue 17, item 5) on a real two-region mesh
 * (`meridian up --regions a,b --auth`): a subscription made through the
 * admin API in region a replicates to b; a push to a is announced once by a
 * (`io.meridian.pushed`, signed, parsed by the cloudevents SDK) and its
 * replica once by b (`io.meridian.replicated`); a receiver that stalls never
 * slows a push, and gets everything once it answers again; a deleted
 * subscription stops; developers are 403 on the routes, a project admin
 * only reaches their own project; the secret never appears in an answer; a
 * SIEM subscription made with `meridian webhook add --siem` gets each
 * region's audit records from that region's worker (whose NATS rights under
 * `--auth` let it read and acknowledge its region's audit stream).
 *
 * One mesh for the file; the steps run in order.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { HTTP } from "cloudevents";
import { verifyWebhook } from "../../protocol/webhook.js";
import { cleanupStack, eventually, runCli, tempDir } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";
import { OCI_MANIFEST, OciClient, sha256 } from "../../testing/oci-client.js";
import { startWebhookReceiver } from "../../testing/webhook-receiver.js";

const cleanup = cleanupStack({ after });
const SECRET = "webhook-secret-never-shown-3f9a";
let mesh: RunningMesh;
let adminAuth: string;
let secretFile: string;
const receiver = {
  mode: "ok" as "ok" | "stall",
  got: [] as Array<{ headers: IncomingHttpHeaders; body: string }>,
};
const stalled: ServerResponse[] = [];
let receiverUrl: string;

const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
const registry = (region: string) => mesh.regions.get(region)!.registry;

async function admin(
  region: string,
  method: string,
  path: string,
  json?: unknown,
  authorization = adminAuth,
) {
  const headers: Record<string, string> = { authorization };
  if (json !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`${registry(region)}/admin/v1${path}`, {
    method,
    headers,
    ...(json === undefined ? {} : { body: JSON.stringify(json) }),
  });
  const text = await res.text();
  return { status: res.status, text, body: (text === "" ? {} : JSON.parse(text)) as Record<string, unknown> };
}

/** Push a new image to `repo:tag` in `region`; resolves with its digest. */
async function push(region: string, repo: string, tag: string): Promise<string> {
  const c = new OciClient(registry(region), adminAuth);
  const config = await c.pushBlob(
    repo,
    Buffer.from(JSON.stringify({ os: "linux", architecture: "amd64", nonce: Math.random() })),
    "application/vnd.oci.image.config.v1+json",
  );
  const layer = await c.pushBlob(repo, Buffer.from(`layer ${Math.random()}`));
  const manifest = JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [layer] });
  const res = await c.fetch(`/v2/${repo}/manifests/${tag}`, {
    method: "PUT",
    headers: { "content-type": OCI_MANIFEST },
    body: manifest,
  });
  assert.equal(res.status, 201, await res.text());
  return sha256(manifest);
}

let firstPush = { id: "", seq: 0 };
const events = () => receiver.got.map((r) => JSON.parse(r.body) as Record<string, unknown>);

before(async () => {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (receiver.mode === "stall") {
        stalled.push(res);
        return;
      }
      receiver.got.push({ headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanup(async () => {
    for (const res of stalled) res.destroy();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  receiverUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  secretFile = join(tempDir(cleanup), "webhook-secret");
  writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o600 });
  mesh = await startMesh(cleanup, ["a", "b"], undefined, ["--auth"], {
    MERIDIAN_WEBHOOK_ALLOW_LOOPBACK: "true",
    MERIDIAN_WEBHOOK_TIMEOUT_MS: "1000",
  });
  adminAuth = basic("admin", readFileSync(mesh.adminPasswordFile!, "utf8").trim());
});

describe("webhooks as CloudEvents on a two-region mesh", () => {
  test("who may manage subscriptions: developers 403, a project admin only their project", async () => {
    for (const [path, body] of [
      ["/projects/team", { public: false }],
      ["/projects/other", { public: false }],
      ["/users/padmin", { password: "padmin-password-1" }],
      ["/users/dev", { password: "dev-password-1" }],
      ["/projects/team/members/padmin", { role: "projectAdmin" }],
      ["/projects/team/members/dev", { role: "developer" }],
    ] as const) {
      const reply = await admin("a", "PUT", path, body);
      assert.ok(reply.status < 300, `${path}: ${reply.status} ${reply.text}`);
    }
    const dev = basic("dev", "dev-password-1");
    const padmin = basic("padmin", "padmin-password-1");
    const sub = { url: receiverUrl, project: "team", secretFile };
    assert.equal((await admin("a", "GET", "/webhooks", undefined, dev)).status, 403);
    assert.equal((await admin("a", "PUT", "/webhooks/x", sub, dev)).status, 403);
    assert.equal((await admin("a", "GET", "/webhooks/x", undefined, dev)).status, 403);
    assert.equal((await admin("a", "DELETE", "/webhooks/x", undefined, dev)).status, 403);
    const elsewhere = await admin("a", "PUT", "/webhooks/x", { ...sub, project: "other" }, padmin);
    assert.equal(elsewhere.status, 403, elsewhere.text);
    const bad = await admin("a", "PUT", "/webhooks/x", { ...sub, events: ["nope"] }, padmin);
    assert.equal(bad.status, 400, bad.text);
    const own = await admin("a", "PUT", "/webhooks/padmin-hook", { ...sub, events: ["tag"] }, padmin);
    assert.equal(own.status, 200, own.text);
    assert.equal((await admin("a", "DELETE", "/webhooks/padmin-hook", undefined, padmin)).status, 200);
  });

  test("a push is announced once by its region, its replica once by the other; signed; SDK-parsable", async () => {
    const put = await admin("a", "PUT", "/webhooks/ci", { url: receiverUrl, project: "team", secretFile });
    assert.equal(put.status, 200, put.text);
    assert.ok(!put.text.includes(SECRET));
    await eventually(async () => (await admin("b", "GET", "/webhooks/ci")).status === 200, 30_000, 100);
    for (const region of ["a", "b"]) {
      const list = await admin(region, "GET", "/webhooks");
      assert.ok(!list.text.includes(SECRET), "the secret is never answered");
      assert.deepEqual(
        (list.body.webhooks as Array<Record<string, unknown>>).map((w) => [w.name, w.project, w.url]),
        [["ci", "team", receiverUrl]],
      );
    }
    // Give both workers a moment to start the subscription's durable before the push.
    await new Promise((r) => setTimeout(r, 1_500));
    const digest = await push("a", "team/app", "v1");
    await eventually(
      () =>
        events().some(
          (e) => e.type === "io.meridian.replicated" && (e.data as { digest: string }).digest === digest,
        ),
      30_000,
      100,
    );
    await new Promise((r) => setTimeout(r, 1_000));
    const pushed = receiver.got.filter((r) => JSON.parse(r.body).type === "io.meridian.pushed");
    assert.equal(pushed.length, 1, "announced once, by a");
    const first = pushed[0]!;
    assert.ok(
      verifyWebhook(
        SECRET,
        first.headers["x-meridian-timestamp"] as string,
        first.headers["x-meridian-signature"] as string,
        first.body,
        Math.floor(Date.now() / 1000),
      ),
      "the HMAC verifies with the secret file's key",
    );
    const ce = HTTP.toEvent({ headers: first.headers as Record<string, string>, body: first.body });
    const one = Array.isArray(ce) ? ce[0]! : ce;
    assert.equal(one.source, "meridian/a");
    assert.equal(one.subject, "team/app:v1");
    assert.deepEqual(one.data, {
      repository: "team/app",
      tag: "v1",
      digest,
      mediaType: OCI_MANIFEST,
      actor: "admin",
      region: "a",
      origin: "a",
    });
    const replicated = events().filter((e) => e.type === "io.meridian.replicated");
    assert.equal(replicated.length, 1, "the replica announced once, by b");
    assert.equal(replicated[0]!.source, "meridian/b");
    // A replica keeps its origin event's id; CloudEvents identify an event by (source, id).
    assert.equal(replicated[0]!.id, one.id);
    assert.ok(!receiver.got.some((r) => JSON.stringify(r).includes(SECRET)));

    // Each region's worker keeps its attempts; the CLI gathers them.
    const shown = await runCli(["webhook", "deliveries", "ci", "--data", mesh.dataDir, "--json"], 60_000);
    assert.equal(shown.code, 0, shown.stderr);
    const got = JSON.parse(shown.stdout) as { deliveries: Array<Record<string, unknown>> };
    const mine = got.deliveries.filter((d) => d.eventId === one.id);
    assert.deepEqual(mine.map((d) => [d.region, d.type, d.status]).sort(), [
      ["a", "io.meridian.pushed", 200],
      ["b", "io.meridian.replicated", 200],
    ]);
    assert.ok(!shown.stdout.includes(SECRET));
    firstPush = {
      id: one.id,
      seq: mine.find((d) => d.region === "a")!.seq as number,
    };
  });

  test("a receiver that stalls never slows a push; once it answers, every event arrives", async () => {
    receiver.mode = "stall";
    const digests: string[] = [];
    for (let i = 0; i < 3; i++) {
      const started = Date.now();
      digests.push(await push("a", "team/app", `s${i}`));
      assert.ok(Date.now() - started < 10_000, "a push finishes while the receiver stalls");
    }
    await eventually(() => stalled.length >= 2, 20_000, 100); // deliveries were tried (and time out)
    receiver.mode = "ok";
    await eventually(
      () =>
        digests.every((d) =>
          events().some(
            (e) => e.type === "io.meridian.pushed" && (e.data as { digest: string }).digest === d,
          ),
        ),
      60_000,
      200,
    );
  });

  test("replay from a sequence re-delivers with the same ids; only admins may ask", async () => {
    const dev = basic("dev", "dev-password-1");
    assert.equal((await admin("a", "POST", "/webhooks/ci/replay", { from: 1 }, dev)).status, 403);
    assert.equal((await admin("a", "POST", "/webhooks/ci/replay", { from: 0 })).status, 400);
    const n = receiver.got.length;
    const replay = await runCli(
      ["webhook", "replay", "ci", "--from", String(firstPush.seq), "--data", mesh.dataDir],
      60_000,
    );
    assert.equal(replay.code, 0, replay.stderr);
    assert.equal(replay.stdout, `webhook ci: replaying a from ${firstPush.seq}\n`);
    // The first push was acknowledged long ago: seeing it again is the replay (late retries of
    // the stalled deliveries may interleave, at least once, so only what the replay adds is asserted).
    const again = () =>
      receiver.got
        .slice(n)
        .map((r) => JSON.parse(r.body) as Record<string, unknown>)
        .filter((e) => e.id === firstPush.id);
    await eventually(() => again().length >= 1, 30_000, 100);
    assert.deepEqual(
      again().map((e) => [e.source, e.type]),
      [["meridian/a", "io.meridian.pushed"]],
      "the push at that sequence, same id, re-sent by a only",
    );
  });

  test("a deleted subscription receives nothing more", async () => {
    assert.equal((await admin("a", "DELETE", "/webhooks/ci")).status, 200);
    assert.equal((await admin("a", "GET", "/webhooks/ci")).status, 404);
    await eventually(async () => (await admin("b", "GET", "/webhooks/ci")).status === 404, 30_000, 100);
    await new Promise((r) => setTimeout(r, 1_000));
    const n = receiver.got.length;
    await push("a", "team/app", "after-delete");
    await new Promise((r) => setTimeout(r, 3_000));
    assert.equal(receiver.got.length, n);
  });

  test("meridian webhook add, list and delete", async () => {
    const meridian = (args: string[]) => runCli([...args, "--data", mesh.dataDir], 60_000);
    const add = await meridian([
      "webhook",
      "add",
      "cli-hook",
      "--url",
      receiverUrl,
      "--project",
      "team",
      "--events",
      "pushed,tag",
      "--repos",
      "team/app*",
      "--secret-file",
      secretFile,
    ]);
    assert.equal(add.code, 0, add.stderr);
    assert.equal(add.stdout, `webhook cli-hook: team → ${receiverUrl}\n`);
    const list = await meridian(["webhook", "list"]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^name\s+project\s+url\s+events\s+repos\s+signed\s+set by\s+at$/m);
    assert.match(list.stdout, /^cli-hook\s+team\s+\S+\s+pushed,tag\s+team\/app\*\s+yes\s+admin\s+\S+$/m);
    assert.ok(!list.stdout.includes(SECRET));
    const bad = await meridian(["webhook", "add", "x", "--url", receiverUrl]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--url URL and --project P are required/);
    const del = await meridian(["webhook", "delete", "cli-hook"]);
    assert.equal(del.code, 0, del.stderr);
    assert.equal(del.stdout, "deleted webhook cli-hook\n");
    assert.equal((await admin("a", "GET", "/webhooks/cli-hook")).status, 404);
  });

  test("meridian webhook add --siem: every region's worker streams its own audit records (its NATS rights)", async () => {
    const siem = await startWebhookReceiver(cleanup, "/siem");
    const meridian = (args: string[]) => runCli([...args, "--data", mesh.dataDir], 60_000);
    const filtered = await meridian([
      "webhook",
      "add",
      "s",
      "--siem",
      "--url",
      siem.url,
      "--events",
      "pushed",
    ]);
    assert.equal(filtered.code, 2);
    assert.match(filtered.stderr, /--siem takes no --events/);
    const add = await meridian([
      "webhook",
      "add",
      "siem",
      "--siem",
      "--url",
      siem.url,
      "--secret-file",
      secretFile,
    ]);
    assert.equal(add.code, 0, add.stderr);
    assert.equal(add.stdout, `webhook siem: audit (SIEM) → ${siem.url}\n`);
    const list = await meridian(["webhook", "list"]);
    assert.match(list.stdout, /^siem\s+\*\s+\S+\s+audit\s+all\s+yes\s+admin\s+\S+$/m);
    const padmin = basic("padmin", "padmin-password-1");
    assert.equal(
      (await admin("a", "GET", "/webhooks/siem", undefined, padmin)).status,
      404,
      "not a project admin's",
    );
    // A failed login in a, a pull in b: each region's worker reads its own region's audit stream.
    assert.equal(
      (await fetch(`${registry("a")}/v2/`, { headers: { authorization: basic("mallory", "x") } })).status,
      401,
    );
    const pulled = await fetch(`${registry("b")}/v2/team/app/manifests/s0`, {
      headers: { authorization: adminAuth, accept: OCI_MANIFEST },
    });
    assert.equal(pulled.status, 200);
    await pulled.arrayBuffer();
    const records = () =>
      siem.state.got.flatMap(
        (g) => JSON.parse(g.body) as Array<{ source: string; type: string; data: { actor: string } }>,
      );
    await eventually(
      () =>
        records().some(
          (e) =>
            e.source === "meridian/a/audit" &&
            e.type === "io.meridian.audit.login.failed" &&
            e.data.actor === "mallory",
        ) && records().some((e) => e.source === "meridian/b/audit" && e.type === "io.meridian.audit.pull"),
      60_000,
      200,
    );
    const now = Math.floor(Date.now() / 1000);
    for (const g of siem.state.got) {
      assert.equal(g.headers["content-type"], "application/cloudevents-batch+json; charset=utf-8");
      assert.ok(
        verifyWebhook(
          SECRET,
          g.headers["x-meridian-timestamp"] as string,
          g.headers["x-meridian-signature"] as string,
          g.body,
          now,
          600,
        ),
      );
    }
    assert.equal((await meridian(["webhook", "delete", "siem"])).code, 0);
  });
});
