/**
 * Issue 17, item 5, the rest, end to end on a real node (authentication on)
 * and a real nats-server, with the worker's webhook part as the worker runs
 * it (its own view of the log caught up and followed, followWebhooks, a
 * WebhookDeliverer) and real receivers on 127.0.0.1:
 *
 * - subscriptions of every project (`*`) and SIEM ones are system admins'
 *   (403 for a project admin), made through the admin API;
 * - a failover made through the admin API is announced once
 *   (`io.meridian.failover`), whole to `*`, cut to its project's scopes for
 *   a project's subscription;
 * - a loop of pushes refused by a quota is announced once per repository
 *   (`io.meridian.quota.exceeded`, at most one a minute per repository);
 * - a receiver that never answers does not hold pushes back;
 * - the SIEM receives every audit record (pushes, pulls, logins, failed
 *   logins, admin changes) as signed CloudEvents batches, including those
 *   made while it answered 500 and across a restart of the node and of the
 *   worker: nothing lost, every id always carrying the same record; a
 *   replay from the audit stream's first sequence re-sends the same ids.
 *
 * One node for the file; the steps run in order.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { HTTP } from "cloudevents";
import { JetStreamLog } from "../../node/data/jetstream-log.js";
import { catchUp, followLog } from "../../node/data/log-follow.js";
import { MetadataView } from "../../node/data/view.js";
import { verifyWebhook } from "../../protocol/webhook.js";
import { WebhookDeliverer } from "../../replication/webhook-delivery.js";
import { followWebhooks } from "../../replication/webhooks-follow.js";
import {
  cleanupStack,
  eventually,
  silentLogger,
  startTestNats,
  startTestNode,
  tempDir,
} from "../../testing/harness.js";
import { OciClient, sha256 } from "../../testing/oci-client.js";
import { startWebhookReceiver, type WebhookReceiver } from "../../testing/webhook-receiver.js";
import type { RunningNode } from "../server.js";

const cleanup = cleanupStack({ after });
const ADMIN_PASSWORD = "admin-secret-pw";
const PASSWORD = "correct horse battery";
const SECRET = "siem-and-webhook-secret-7c1e";
let node: RunningNode;
let natsUrl: string;
let dataDir: string;
let secretFile: string;
let meshR: WebhookReceiver; // project "*", failover and quota
let teamR: WebhookReceiver; // project team, every kind
let siemR: WebhookReceiver;
let worker: { deliverer: WebhookDeliverer; stop(): Promise<void> };

const basic = (user: string, password = PASSWORD) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
const as = (user: string, password = PASSWORD) => new OciClient(node.url, basic(user, password));
const admin = () => as("admin", ADMIN_PASSWORD);

async function call(client: OciClient, method: string, path: string, json?: unknown) {
  const res = await client.fetch(`/admin/v1${path}`, {
    method,
    signal: AbortSignal.timeout(30_000),
    ...(json === undefined
      ? {}
      : { body: JSON.stringify(json), headers: { "content-type": "application/json" } }),
  });
  const text = await res.text();
  return { status: res.status, text, body: (text === "" ? {} : JSON.parse(text)) as Record<string, unknown> };
}
async function ok(client: OciClient, method: string, path: string, json?: unknown) {
  const r = await call(client, method, path, json);
  assert.ok(r.status >= 200 && r.status < 300, `${method} ${path}: ${r.status} ${r.text}`);
  return r.body;
}

/** The worker's webhook part, as replication/main.ts runs it: its own view, caught up, then followed. */
async function startWorker(): Promise<typeof worker> {
  const log = JetStreamLog.open({
    servers: [natsUrl],
    region: "test",
    name: "worker-test",
    logger: silentLogger,
  });
  const view = new MetadataView(join(tempDir(cleanup), "view"));
  await view.open();
  const follow = followLog(log, view, silentLogger);
  await catchUp(log, view, silentLogger);
  const nc = await connect({ servers: natsUrl });
  const deliverer = new WebhookDeliverer({
    js: jetstream(nc),
    jsm: await jetstreamManager(nc),
    region: "test",
    logger: silentLogger,
    allowLoopback: true,
    timeoutMs: 1_500,
    backoffScale: 0.05,
  });
  const follower = followWebhooks(view, deliverer, "test", silentLogger);
  await follower.ready;
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    follower.stop();
    await deliverer.close();
    await nc.close();
    await follow.stop();
    await view.close();
    await log.close();
  };
  cleanup(stop);
  return { deliverer, stop };
}

const bodies = (r: WebhookReceiver) => r.state.got.map((g) => JSON.parse(g.body) as Record<string, unknown>);
const ofType = (r: WebhookReceiver, type: string) => bodies(r).filter((b) => b.type === type);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function startTheNode(): Promise<RunningNode> {
  return startTestNode(cleanup, {
    nats: natsUrl,
    dataDir,
    auth: { enabled: true, adminPasswordFile: join(dataDir, "admin-password"), loginFailures: 1000 },
  });
}

before(async () => {
  natsUrl = (await startTestNats(cleanup)).url;
  dataDir = tempDir(cleanup);
  writeFileSync(join(dataDir, "admin-password"), `${ADMIN_PASSWORD}\n`);
  secretFile = join(tempDir(cleanup), "hmac");
  writeFileSync(secretFile, `${SECRET}\n`);
  node = await startTheNode();
  await ok(admin(), "PUT", "/projects/team", { public: false });
  for (const [name, role] of [
    ["dev", "developer"],
    ["padmin", "projectAdmin"],
  ] as const) {
    await ok(admin(), "PUT", `/users/${name}`, { password: PASSWORD });
    await ok(admin(), "PUT", `/projects/team/members/${name}`, { role });
  }
  meshR = await startWebhookReceiver(cleanup);
  teamR = await startWebhookReceiver(cleanup);
  siemR = await startWebhookReceiver(cleanup, "/siem");
  siemR.state.mode = "fail"; // the SIEM is down from the start
});

describe("failover, quota refusals and the SIEM stream as CloudEvents", () => {
  test("subscriptions of every project and SIEM ones are a system admin's", async () => {
    const padmin = as("padmin");
    const all = { url: meshR.url, project: "*", events: ["failover", "quota"], secretFile };
    assert.equal((await call(padmin, "PUT", "/webhooks/mesh", all)).status, 403);
    assert.equal(
      (await call(padmin, "PUT", "/webhooks/siem", { url: siemR.url, project: "*", siem: true })).status,
      403,
    );
    assert.equal(
      (await call(as("dev"), "PUT", "/webhooks/siem", { url: siemR.url, project: "*", siem: true })).status,
      403,
    );
    const wrong = await call(admin(), "PUT", "/webhooks/siem", {
      url: siemR.url,
      project: "team",
      siem: true,
    });
    assert.equal(wrong.status, 400);
    assert.match(wrong.text, /siem: wants project \*/);
    await ok(admin(), "PUT", "/webhooks/mesh", all);
    await ok(admin(), "PUT", "/webhooks/siem", { url: siemR.url, project: "*", siem: true, secretFile });
    await ok(padmin, "PUT", "/webhooks/team", { url: teamR.url, project: "team", secretFile });
    const seen = (await ok(padmin, "GET", "/webhooks")).webhooks as Array<{ name: string }>;
    assert.deepEqual(
      seen.map((w) => w.name),
      ["team"],
      "a project admin sees only their project's",
    );
    worker = await startWorker();
  });

  test("a failover is announced once: whole to `*`, its project's scopes to a project's subscription", async () => {
    for (const scope of ["team/", "other/"])
      await ok(admin(), "PUT", "/rules", { scope, tagMerge: "home-region", home: "elsewhere" });
    const done = await ok(admin(), "POST", "/failover", { from: "elsewhere", to: "test", force: true });
    await eventually(
      () =>
        ofType(meshR, "io.meridian.failover").length >= 1 &&
        ofType(teamR, "io.meridian.failover").length >= 1,
      15_000,
    );
    await sleep(500);
    const whole = ofType(meshR, "io.meridian.failover");
    const team = ofType(teamR, "io.meridian.failover");
    assert.equal(whole.length, 1);
    assert.equal(team.length, 1);
    assert.equal(whole[0]?.id, team[0]?.id, "one log event, one id");
    const wd = (whole[0]!.data as { failover: { scopes: string[]; from: string; to: string; epoch: number } })
      .failover;
    assert.deepEqual([...wd.scopes].sort(), ["other/", "team/"]);
    assert.equal(wd.from, "elsewhere");
    assert.equal(wd.to, "test");
    assert.equal(wd.epoch, done.epoch);
    assert.deepEqual(
      (team[0]!.data as { failover: { scopes: string[] } }).failover.scopes,
      ["team/"],
      "never another project's scope",
    );
    const got = meshR.state.got.find((g) => JSON.parse(g.body).type === "io.meridian.failover")!;
    const ce = HTTP.toEvent({ headers: got.headers as Record<string, string>, body: got.body });
    assert.equal((Array.isArray(ce) ? ce[0] : ce)?.type, "io.meridian.failover");
    const now = Math.floor(Date.now() / 1000);
    assert.ok(
      verifyWebhook(
        SECRET,
        got.headers["x-meridian-timestamp"] as string,
        got.headers["x-meridian-signature"] as string,
        got.body,
        now,
      ),
    );
  });

  test("a loop of pushes refused by a quota is announced once per repository", async () => {
    await ok(admin(), "PUT", "/quotas/team", { limitBytes: 100 });
    const dev = as("dev");
    const blob = randomBytes(4096);
    const refuse = async (repo: string) => {
      const res = await dev.fetch(`/v2/${repo}/blobs/uploads/?digest=${sha256(blob)}`, {
        method: "POST",
        headers: { "content-type": "application/octet-stream" },
        body: blob,
        signal: AbortSignal.timeout(30_000),
      });
      const text = await res.text();
      assert.equal(res.status, 403, text);
      assert.match(text, /quota exceeded/);
    };
    for (let i = 0; i < 25; i++) await refuse("team/a");
    for (let i = 0; i < 5; i++) await refuse("team/b");
    await eventually(
      () =>
        ofType(meshR, "io.meridian.quota.exceeded").length >= 2 &&
        ofType(teamR, "io.meridian.quota.exceeded").length >= 2,
      15_000,
    );
    await sleep(1_500);
    for (const r of [meshR, teamR]) {
      const got = ofType(r, "io.meridian.quota.exceeded");
      assert.deepEqual(
        got.map((b) => (b.data as { repository: string }).repository).sort(),
        ["team/a", "team/b"],
        "one per repository, not one per refusal",
      );
      assert.deepEqual((got[0]!.data as { quota: unknown }).quota, {
        project: "team",
        limitBytes: 100,
        usedBytes: 0,
        requestedBytes: 4096,
      });
    }
    await ok(admin(), "PUT", "/quotas/team", { limitBytes: null });
  });

  test("a receiver that never answers does not hold pushes back", async () => {
    teamR.state.mode = "stall";
    const dev = as("dev");
    await dev.pushRandomImage("team/app", "first", 1, 256);
    await eventually(() => teamR.state.stalled.length >= 1, 15_000); // the receiver is now hanging
    const started = Date.now();
    const tags: string[] = [];
    for (let i = 0; i < 6; i++) {
      tags.push(`t${i}`);
      await dev.pushRandomImage("team/app", `t${i}`, 1, 256);
    }
    assert.ok(Date.now() - started < 20_000, "six pushes complete while the receiver hangs");
    assert.ok(
      teamR.state.stalled.length >= 1 &&
        teamR.state.got.every((g) => g.status === undefined || g.status === 204),
    );
    // Deliveries time out meanwhile.
    await eventually(() => worker.deliverer.deliveries("team").some((a) => a.error === "timed out"), 15_000);
    teamR.state.mode = "ok";
    await eventually(() => {
      const moved = new Set(
        bodies(teamR)
          .filter((b) => b.type === "io.meridian.pushed")
          .map((b) => (b.data as { tag?: string }).tag),
      );
      return ["first", ...tags].every((t) => moved.has(t));
    }, 60_000);
  });

  test("the SIEM gets every audit record, through 500s and restarts of the node and the worker", async () => {
    const dev = as("dev");
    const img = await dev.pushRandomImage("team/siem", "v1", 1, 128);
    const pull = await dev.fetch(`/v2/team/siem/manifests/${img.digest}`, {
      signal: AbortSignal.timeout(30_000),
    });
    assert.equal(pull.status, 200);
    await pull.arrayBuffer();
    assert.equal((await as("dev", "wrong password").fetch("/v2/")).status, 401);
    await ok(admin(), "PUT", "/projects/siemtest", { public: true });
    await eventually(() => siemR.state.got.length >= 2, 15_000); // refused, retried
    assert.ok(siemR.state.got.every((g) => g.status === 500));

    // The node restarts (its buffered records flushed on close), then the worker.
    await node.close();
    node = await startTheNode();
    await worker.stop();
    worker = await startWorker();
    const after = await as("dev").fetch(`/v2/team/siem/manifests/v1`, {
      signal: AbortSignal.timeout(30_000),
    });
    assert.equal(after.status, 200);
    await after.arrayBuffer();
    assert.equal((await as("mallory", "nope").fetch("/v2/")).status, 401);
    await sleep(300); // the audit log's linger
    const audit = (await ok(admin(), "GET", "/audit?limit=10000")).records as Array<Record<string, unknown>>;
    siemR.state.mode = "ok";

    const canon = (v: unknown): string =>
      JSON.stringify(v, (_k, x) =>
        x !== null && typeof x === "object" && !Array.isArray(x)
          ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => a.localeCompare(b)))
          : x,
      );
    const delivered = () => {
      const byId = new Map<string, string>();
      for (const g of siemR.state.got.filter((x) => x.status === 204))
        for (const e of JSON.parse(g.body) as Array<{ id: string; data: unknown }>)
          byId.set(e.id, canon(e.data));
      return byId;
    };
    await eventually(() => {
      const have = new Set(delivered().values());
      return audit.every((r) => have.has(canon(r)));
    }, 60_000);

    // Every request was a signed CloudEvents batch; an id always carries the same record.
    const now = Math.floor(Date.now() / 1000);
    const seen = new Map<string, string>();
    for (const g of siemR.state.got) {
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
      const batch = JSON.parse(g.body) as Array<{
        id: string;
        type: string;
        specversion: string;
        source: string;
        data: unknown;
      }>;
      assert.ok(Array.isArray(batch) && batch.length > 0 && batch.length <= 256);
      for (const e of batch) {
        assert.equal(e.specversion, "1.0");
        assert.equal(e.source, "meridian/test/audit");
        const prev = seen.get(e.id);
        if (prev !== undefined) assert.equal(prev, canon(e.data), `id ${e.id} always the same record`);
        seen.set(e.id, canon(e.data));
      }
    }
    const ce = HTTP.toEvent({
      headers: siemR.state.got.at(-1)!.headers as Record<string, string>,
      body: siemR.state.got.at(-1)!.body,
    });
    assert.ok(Array.isArray(ce) && ce.length > 0, "the SDK reads a batch");
    const failedIds = siemR.state.got
      .filter((g) => g.status === 500)
      .flatMap((g) => (JSON.parse(g.body) as Array<{ id: string }>).map((e) => e.id));
    const okIds = delivered();
    assert.ok(
      failedIds.length > 0 && failedIds.every((id) => okIds.has(id)),
      "what was refused came again, same ids",
    );
    const types = new Set(
      siemR.state.got.flatMap((g) => (JSON.parse(g.body) as Array<{ type: string }>).map((e) => e.type)),
    );
    for (const action of ["push", "pull", "login", "login.failed", "admin"])
      assert.ok(types.has(`io.meridian.audit.${action}`), `a ${action} record reached the SIEM`);
    const actors = [...okIds.values()].map((d) => JSON.parse(d) as { actor: string; action: string });
    assert.ok(
      actors.some((a) => a.actor === "mallory" && a.action === "login.failed"),
      "a failed login after the restarts",
    );
    assert.ok(worker.deliverer.deliveries("siem").every((a) => a.type.startsWith("io.meridian.audit (")));

    // Replay from the audit stream's first sequence: the same ids carrying the same records.
    const n = siemR.state.got.length;
    await ok(admin(), "POST", "/webhooks/siem/replay", { from: 1 });
    const replayed = () =>
      siemR.state.got.slice(n).flatMap((g) => JSON.parse(g.body) as Array<{ id: string; data: unknown }>);
    await eventually(() => replayed().some((e) => e.id === "test:1:0"), 30_000);
    for (const e of replayed())
      assert.equal(seen.get(e.id) ?? canon(e.data), canon(e.data), `replayed ${e.id}`);
    assert.ok(
      replayed().some((e) => seen.has(e.id)),
      "the replay re-sends ids already delivered",
    );
  });
});
