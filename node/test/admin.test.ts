/**
 * The admin API (node/http/admin.ts), route by route and error by error,
 * against a real node (in-process, on a loopback port) and a real
 * nats-server; the undelete window against a node process started with
 * MERIDIAN_UNDELETE_WINDOW_HOURS.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { parsePolicies } from "../../protocol/policy.js";
import { sleep } from "../../testing/faults.js";
import {
  cleanupStack,
  eventually,
  freePort,
  spawnMeridian,
  startTestNats,
  startTestNode,
  tempDir,
} from "../../testing/harness.js";
import { errorCode, OCI_MANIFEST, OciClient } from "../../testing/oci-client.js";
import { ConfigError, loadNodeConfig } from "../config.js";
import type { RunningNode } from "../server.js";

const cleanup = cleanupStack({ after });
let natsUrl: string;
let node: RunningNode;
let c: OciClient;

before(async () => {
  const nats = await startTestNats(cleanup);
  natsUrl = nats.url;
  node = await startTestNode(cleanup, { nats: nats.url });
  c = new OciClient(node.url);
});

type Body = { json: unknown } | { text: string; type?: string };

async function call(method: string, path: string, body?: Body, base = c.base): Promise<Response> {
  const init: RequestInit = { method };
  if (body !== undefined) {
    init.body = "json" in body ? JSON.stringify(body.json) : body.text;
    const type = "json" in body ? "application/json" : body.type;
    if (type !== undefined) init.headers = { "content-type": type };
  }
  return fetch(`${base}/admin/v1${path}`, init);
}

async function ok<T = Record<string, unknown>>(res: Response, status = 200): Promise<T> {
  const text = await res.text();
  assert.equal(res.status, status, `${res.url}: ${text}`);
  assert.match(res.headers.get("content-type") ?? "", /application\/json/);
  return JSON.parse(text) as T;
}

/** An OCI error answer; returns its detail.errors (if any). */
async function fails(res: Response, status: number, code: string): Promise<string[]> {
  const text = await res.text();
  assert.equal(res.status, status, `${res.url}: ${text}`);
  assert.match(res.headers.get("content-type") ?? "", /application\/json/);
  const body = JSON.parse(text) as { errors: Array<{ code: string; message: string; detail: unknown }> };
  assert.equal(body.errors[0]!.code, code, text);
  assert.ok(body.errors[0]!.message.length > 0);
  return (body.errors[0]!.detail as { errors?: string[] } | null)?.errors ?? [];
}

async function pullTag(repo: string, tag: string): Promise<Response> {
  return c.fetch(`/v2/${repo}/manifests/${tag}`, { headers: { accept: OCI_MANIFEST } });
}

describe("policies", () => {
  test("create (JSON), list, replace (YAML, name from the URL), show, delete: a round trip", async () => {
    const put = await ok<{ name: string; policy: Record<string, unknown>; seq: number }>(
      await call("PUT", "/policies/rt", {
        json: { name: "rt", source: "a", destination: "b", repositories: ["apps/**"] },
      }),
    );
    assert.equal(put.name, "rt");
    assert.ok(put.seq > 0);
    assert.deepEqual(put.policy.sources, ["a"]);
    assert.deepEqual(put.policy.repositories, { include: ["apps/**"], exclude: [] });
    assert.deepEqual(put.policy.trigger, { type: "on-push" });

    const list = await ok<{ policies: Array<{ name: string; origin: string; updatedAt: string }> }>(
      await call("GET", "/policies"),
    );
    const listed = list.policies.find((p) => p.name === "rt");
    assert.ok(listed, "listed");
    assert.equal(listed.origin, "test");
    assert.ok(!Number.isNaN(Date.parse(listed.updatedAt)));

    const yaml = "source: a\ndestinations: [b, c]\ntrigger: manual\ntags:\n  include: ['v*']\n";
    const replaced = await ok<{ policy: Record<string, unknown> }>(
      await call("PUT", "/policies/rt", { text: yaml, type: "application/yaml" }),
    );
    assert.deepEqual(replaced.policy.destinations, ["b", "c"]);
    assert.deepEqual(replaced.policy.trigger, { type: "manual" });

    const shown = await ok<{
      policy: Record<string, unknown>;
      yaml: string;
      runs: unknown[];
      breakerReset: null;
    }>(await call("GET", "/policies/rt"));
    assert.deepEqual(shown.policy, replaced.policy);
    assert.deepEqual(
      JSON.parse(JSON.stringify(parsePolicies(shown.yaml)[0])),
      shown.policy,
      "the YAML round-trips",
    );
    assert.deepEqual(shown.runs, []);
    assert.equal(shown.breakerReset, null);

    assert.deepEqual(Object.keys(await ok(await call("DELETE", "/policies/rt"))).sort(), ["name", "seq"]);
    await fails(await call("GET", "/policies/rt"), 404, "NAME_UNKNOWN");
    await fails(await call("DELETE", "/policies/rt"), 404, "NAME_UNKNOWN");
    const after = await ok<{ policies: Array<{ name: string }> }>(await call("GET", "/policies"));
    assert.ok(!after.policies.some((p) => p.name === "rt"));
  });

  test("POST a file of several policies applies them all; one invalid policy applies none", async () => {
    const file = [
      "policies:",
      "  - {name: f-one, source: a, destination: b}",
      "  - {name: f-two, source: b, destination: a, deletes: true}",
    ].join("\n");
    const applied = await ok<{ applied: string[]; seq: number }>(
      await call("POST", "/policies", { text: file, type: "application/yaml" }),
    );
    assert.deepEqual(applied.applied, ["f-one", "f-two"]);
    const json = await ok<{ applied: string[] }>(
      await call("POST", "/policies", { json: [{ name: "f-three", source: "c", destination: "a" }] }),
    );
    assert.deepEqual(json.applied, ["f-three"]);

    const mixed = "name: f-good\nsource: a\ndestination: b\n---\nname: f-bad\nsource: a\ndestination: a\n";
    const errors = await fails(
      await call("POST", "/policies", { text: mixed, type: "text/yaml" }),
      400,
      "UNSUPPORTED",
    );
    assert.equal(errors.length, 1);
    assert.match(errors[0]!, /f-bad.*destinations/);
    await fails(await call("GET", "/policies/f-good"), 404, "NAME_UNKNOWN");
    await fails(await call("POST", "/policies", { text: "", type: "application/yaml" }), 400, "UNSUPPORTED");
    await fails(
      await call("POST", "/policies", { text: "# nothing\n", type: "application/yaml" }),
      400,
      "UNSUPPORTED",
    );
    const syntax = await fails(
      await call("POST", "/policies", { text: "name: [unclosed\n", type: "application/yaml" }),
      400,
      "UNSUPPORTED",
    );
    assert.match(syntax[0]!, /line \d+, column \d+/);
  });

  test("an invalid policy is 400 listing every problem", async () => {
    const errors = await fails(
      await call("PUT", "/policies/broken", {
        json: {
          name: "other",
          source: "a",
          destination: "Bad Region",
          tags: ["regex:("],
          trigger: "sometimes",
          bogus: 1,
        },
      }),
      400,
      "UNSUPPORTED",
    );
    assert.equal(errors.length, 5, errors.join("\n"));
    for (const want of [
      /does not match the URL/,
      /destination/,
      /invalid regex/,
      /trigger/,
      /bogus: unknown key/,
    ])
      assert.ok(
        errors.some((e) => want.test(e)),
        `${want} in ${errors.join(" | ")}`,
      );
    await fails(await call("GET", "/policies/broken"), 404, "NAME_UNKNOWN");
  });

  test("malformed policy requests", async () => {
    await fails(
      await call("PUT", "/policies/Upper", { json: { source: "a", destination: "b" } }),
      400,
      "NAME_INVALID",
    );
    await fails(await call("GET", "/policies/Upper"), 400, "NAME_INVALID");
    await fails(
      await call("PUT", "/policies/p", { text: "{not json", type: "application/json" }),
      400,
      "UNSUPPORTED",
    );
    await fails(await call("PUT", "/policies/p", { json: ["a", "list"] }), 400, "UNSUPPORTED");
    await fails(await call("PUT", "/policies/p", { text: "", type: "application/json" }), 400, "UNSUPPORTED");
    const yaml = await fails(
      await call("PUT", "/policies/p", { text: "source: a\n  destination: [b\n", type: "application/yaml" }),
      400,
      "UNSUPPORTED",
    );
    assert.ok(yaml.length >= 1);
    assert.match(yaml[0]!, /policy YAML: line/);
    await fails(await call("GET", "/policies/p/nothing"), 404, "UNSUPPORTED");
    await fails(await call("PATCH", "/policies/p"), 404, "UNSUPPORTED");
  });

  test("run: 202 with a run id, the run record shows the request; 404 for unknown policies and runs", async () => {
    await ok(
      await call("PUT", "/policies/runnable", { json: { source: "a", destination: "b", trigger: "manual" } }),
    );
    const { runId } = await ok<{ runId: string }>(await call("POST", "/policies/runnable/run"), 202);
    assert.match(runId, /^[0-9a-f-]{36}$/);
    const run = await ok<{
      name: string;
      runId: string;
      requested: { actor: string; origin: string; at: string };
    }>(await call("GET", `/policies/runnable/runs/${runId}`));
    assert.equal(run.name, "runnable");
    assert.equal(run.runId, runId);
    assert.equal(run.requested.actor, "anonymous", "without auth, everyone is anonymous");
    assert.equal(run.requested.origin, "test");
    const shown = await ok<{ runs: Array<{ runId: string }> }>(await call("GET", "/policies/runnable"));
    assert.deepEqual(
      shown.runs.map((r) => r.runId),
      [runId],
    );
    await fails(await call("GET", "/policies/runnable/runs/no-such-run"), 404, "NAME_UNKNOWN");
    await fails(await call("POST", "/policies/absent/run"), 404, "NAME_UNKNOWN");
    await ok(
      await call("PUT", "/policies/paused", { json: { source: "a", destination: "b", enabled: false } }),
    );
    await fails(await call("POST", "/policies/paused/run"), 400, "UNSUPPORTED");
  });

  test("reset-breaker records the reset; 404 for an unknown policy", async () => {
    await ok(
      await call("PUT", "/policies/breaking", { json: { source: "a", destination: "b", deletes: true } }),
    );
    await ok(await call("POST", "/policies/breaking/reset-breaker"), 202);
    const shown = await ok<{ breakerReset: string | null }>(await call("GET", "/policies/breaking"));
    assert.ok(shown.breakerReset !== null && !Number.isNaN(Date.parse(shown.breakerReset)));
    await fails(await call("POST", "/policies/absent/reset-breaker"), 404, "NAME_UNKNOWN");
  });

  test("alerts lists what was raised", async () => {
    assert.deepEqual(await ok(await call("GET", "/alerts")), { alerts: [] });
    await node.registry.commitAdmin(
      { type: "alert.raised", kind: "delete-breaker", message: "held", policy: "breaking", repo: "x/y" },
      "system",
    );
    const { alerts } = await ok<{ alerts: Array<Record<string, unknown>> }>(await call("GET", "/alerts"));
    assert.equal(alerts.length, 1);
    assert.equal(alerts[0]!.kind, "delete-breaker");
    assert.equal(alerts[0]!.repo, "x/y");
    assert.equal(alerts[0]!.origin, "test");
  });
});

describe("tag rules", () => {
  test("set a scope's rule, list the rules, and the node enforces it", async () => {
    const before = await ok<{ default: { tagMerge: string } }>(await call("GET", "/rules"));
    assert.equal(before.default.tagMerge, "lww");
    await ok(await call("PUT", "/rules", { json: { scope: "ruled/", tagMerge: "first-write" } }));
    const { rules } = await ok<{ rules: Array<{ scope: string; tagMerge: string }> }>(
      await call("GET", "/rules"),
    );
    assert.ok(rules.some((r) => r.scope === "ruled/" && r.tagMerge === "first-write"));
    await c.pushRandomImage("ruled/app", "v1");
    await assert.rejects(c.pushRandomImage("ruled/app", "v1"), /manifest push 403/);

    await ok(
      await call("PUT", "/rules", {
        json: { scope: "homed/app", tagMerge: "home-region", home: "b", epoch: 3 },
      }),
    );
    const after = await ok<{ rules: Array<{ scope: string; homes: Record<string, string> }> }>(
      await call("GET", "/rules"),
    );
    assert.deepEqual(after.rules.find((r) => r.scope === "homed/app")?.homes, { 3: "b" });
  });

  test("malformed rules are refused with every problem listed", async () => {
    const errors = await fails(
      await call("PUT", "/rules", {
        json: { scope: "x/", tagMerge: "newest", home: "NOT A REGION", extra: true },
      }),
      400,
      "UNSUPPORTED",
    );
    assert.equal(errors.length, 3, errors.join(" | "));
    const home = await fails(
      await call("PUT", "/rules", { json: { scope: "x/", tagMerge: "home-region" } }),
      400,
      "UNSUPPORTED",
    );
    assert.match(home[0]!, /home: required/);
    await fails(
      await call("PUT", "/rules", { json: { scope: "x/", tagMerge: "lww", epoch: 1 } }),
      400,
      "UNSUPPORTED",
    );
    await fails(
      await call("PUT", "/rules", { json: { scope: "x/", tagMerge: "home-region", home: "a", epoch: -1 } }),
      400,
      "UNSUPPORTED",
    );
    await fails(
      await call("PUT", "/rules", { json: { scope: "Bad/", tagMerge: "lww" } }),
      400,
      "NAME_INVALID",
    );
    await fails(await call("PUT", "/rules", { json: { tagMerge: "lww" } }), 400, "UNSUPPORTED");
    await fails(await call("PUT", "/rules", { text: "nope", type: "application/json" }), 400, "UNSUPPORTED");
  });
});

describe("tag history", () => {
  test("every write in order, the register at a past time, and deletions", async () => {
    const first = await c.pushRandomImage("hist/app", "v1");
    await sleep(40);
    const between = Date.now();
    await sleep(40);
    const second = await c.pushRandomImage("hist/app", "v1");

    type History = {
      rule: string;
      writes: Array<{
        digest: string | null;
        origin: string;
        via: string;
        actor: string;
        at: string;
        id: string;
      }>;
      current: string | null;
      at?: { time: string; digest: string | null; deleted: boolean };
      conflicts: unknown[];
    };
    const h = await ok<History>(await call("GET", "/repositories/hist/app/tags/v1/history"));
    assert.equal(h.rule, "lww");
    assert.deepEqual(
      h.writes.map((w) => w.digest),
      [first.digest, second.digest],
    );
    assert.ok(
      h.writes.every((w) => w.origin === "test" && w.via === "manifest.pushed" && w.actor === "anonymous"),
    );
    assert.equal(h.current, second.digest);
    assert.equal(h.at, undefined);
    assert.deepEqual(h.conflicts, []);

    const atMs = await ok<History>(await call("GET", `/repositories/hist/app/tags/v1/history?at=${between}`));
    assert.deepEqual(atMs.at, {
      time: new Date(between).toISOString(),
      digest: first.digest,
      deleted: false,
    });
    const iso = new Date(between).toISOString();
    const atIso = await ok<History>(await call("GET", `/repositories/hist/app/tags/v1/history?at=${iso}`));
    assert.equal(atIso.at?.digest, first.digest);
    const early = await ok<History>(await call("GET", "/repositories/hist/app/tags/v1/history?at=1000"));
    assert.deepEqual(early.at, { time: new Date(1000).toISOString(), digest: null, deleted: false });

    assert.equal((await c.fetch("/v2/hist/app/manifests/v1", { method: "DELETE" })).status, 202);
    const deleted = await ok<History>(
      await call("GET", `/repositories/hist/app/tags/v1/history?at=${Date.now() + 1000}`),
    );
    assert.equal(deleted.writes.length, 3);
    assert.equal(deleted.writes[2]!.digest, null);
    assert.equal(deleted.writes[2]!.via, "tag.deleted");
    assert.equal(deleted.current, null);
    assert.deepEqual(deleted.at?.deleted, true);
  });

  test("unknown and malformed tags, repositories and times", async () => {
    await c.pushRandomImage("hist/known", "v1");
    await fails(await call("GET", "/repositories/hist/known/tags/nope/history"), 404, "MANIFEST_UNKNOWN");
    await fails(await call("GET", "/repositories/hist/unknown/tags/v1/history"), 404, "NAME_UNKNOWN");
    await fails(await call("GET", "/repositories/Hist/known/tags/v1/history"), 400, "NAME_INVALID");
    await fails(await call("GET", "/repositories/hist/known/tags/.bad/history"), 400, "MANIFEST_INVALID");
    await fails(
      await call("GET", "/repositories/hist/known/tags/v1/history?at=yesterday"),
      400,
      "UNSUPPORTED",
    );
    await fails(await call("GET", "/repositories/hist/known/tags/v1"), 404, "UNSUPPORTED");
    await fails(await call("GET", "/repositories/hist/known"), 404, "UNSUPPORTED");
  });
});

describe("delete and undelete", () => {
  test("a deleted repository comes back whole: manifests, blobs and tags", async () => {
    const one = await c.pushRandomImage("del/app", "t1");
    const two = await c.pushRandomImage("del/app", "t2");
    const { seq } = await ok<{ seq: number }>(await call("DELETE", "/repositories/del/app"), 202);
    assert.ok(seq > 0);
    assert.equal((await pullTag("del/app", "t1")).status, 404);
    assert.equal(await errorCode(await c.fetch("/v2/del/app/tags/list")), "NAME_UNKNOWN");
    await fails(await call("DELETE", "/repositories/del/app"), 404, "NAME_UNKNOWN");
    const gone = await ok<{ present: boolean; deleted?: { at: string } }>(
      await call("GET", `/artifacts/del/app@${one.digest}`),
    );
    assert.equal(gone.present, false);
    assert.ok(gone.deleted !== undefined && !Number.isNaN(Date.parse(gone.deleted.at)));

    const { restored } = await ok<{ restored: string[] }>(
      await call("POST", "/undelete", { json: { repo: "del/app" } }),
    );
    assert.ok(restored.includes(`manifest ${one.digest}`), restored.join(" | "));
    assert.ok(restored.includes(`tag t2 → ${two.digest}`), restored.join(" | "));
    for (const [tag, image] of [
      ["t1", one],
      ["t2", two],
    ] as const) {
      const res = await pullTag("del/app", tag);
      assert.equal(res.status, 200, `pull del/app:${tag}`);
      assert.equal(res.headers.get("docker-content-digest"), image.digest);
      for (const blob of [image.config, ...image.layers])
        assert.equal((await c.fetch(`/v2/del/app/blobs/${blob.digest}`)).status, 200);
    }
    const back = await ok<{ present: boolean; tags: string[]; deleted?: unknown }>(
      await call("GET", `/artifacts/del/app@${two.digest}`),
    );
    assert.deepEqual(back, {
      region: "test",
      repo: "del/app",
      digest: two.digest,
      present: true,
      tags: ["t2"],
    });
  });

  test("a deleted tag, and a deleted manifest, come back on their own", async () => {
    const image = await c.pushRandomImage("undel/tag", "v1");
    assert.equal((await c.fetch("/v2/undel/tag/manifests/v1", { method: "DELETE" })).status, 202);
    assert.equal((await pullTag("undel/tag", "v1")).status, 404);
    const tag = await ok<{ restored: string[] }>(
      await call("POST", "/undelete", { json: { repo: "undel/tag", tag: "v1" } }),
    );
    assert.deepEqual(tag.restored, [`tag v1 → ${image.digest}`]);
    assert.equal((await pullTag("undel/tag", "v1")).status, 200);
    const again = await fails(
      await call("POST", "/undelete", { json: { repo: "undel/tag", tag: "v1" } }),
      403,
      "DENIED",
    );
    assert.deepEqual(again, []);

    assert.equal(
      (await c.fetch(`/v2/undel/tag/manifests/${image.digest}`, { method: "DELETE" })).status,
      202,
    );
    assert.equal((await pullTag("undel/tag", "v1")).status, 404, "its tags are hidden with it");
    const manifest = await ok<{ restored: string[] }>(
      await call("POST", "/undelete", { json: { repo: "undel/tag", digest: image.digest } }),
    );
    assert.deepEqual(manifest.restored, [`manifest ${image.digest}`]);
    assert.equal((await pullTag("undel/tag", "v1")).status, 200, "and back with it");
  });

  test("nothing to restore is 403 DENIED; malformed undeletes are 400", async () => {
    await c.pushRandomImage("undel/live", "v1");
    await fails(await call("POST", "/undelete", { json: { repo: "undel/live" } }), 403, "DENIED");
    await fails(await call("POST", "/undelete", { json: { repo: "Bad/Name" } }), 400, "NAME_INVALID");
    await fails(
      await call("POST", "/undelete", { json: { repo: "undel/live", digest: "sha256:nope" } }),
      400,
      "DIGEST_INVALID",
    );
    await fails(
      await call("POST", "/undelete", { json: { repo: "undel/live", digest: 7 } }),
      400,
      "DIGEST_INVALID",
    );
    await fails(
      await call("POST", "/undelete", { json: { repo: "undel/live", tag: "-bad" } }),
      400,
      "MANIFEST_INVALID",
    );
    await fails(
      await call("POST", "/undelete", {
        json: { repo: "undel/live", tag: "v1", digest: `sha256:${"a".repeat(64)}` },
      }),
      400,
      "UNSUPPORTED",
    );
    await fails(await call("POST", "/undelete", { json: { tag: "v1" } }), 400, "UNSUPPORTED");
    await fails(
      await call("POST", "/undelete", { json: { repo: "undel/live", extra: 1 } }),
      400,
      "UNSUPPORTED",
    );
    await fails(await call("POST", "/undelete", { text: "{", type: "application/json" }), 400, "UNSUPPORTED");
    await fails(await call("DELETE", "/repositories/Bad/Name"), 400, "NAME_INVALID");
    await fails(await call("DELETE", "/repositories/never/was"), 404, "NAME_UNKNOWN");
  });

  test("undelete after the window has passed is refused (MERIDIAN_UNDELETE_WINDOW_HOURS)", async (t) => {
    const local = cleanupStack(t);
    const port = await freePort();
    const proc = await spawnMeridian(local, "node/server.js", {
      MERIDIAN_REGION: "short",
      MERIDIAN_DATA_DIR: tempDir(local),
      MERIDIAN_LISTEN_PORT: String(port),
      MERIDIAN_NATS_SERVERS: natsUrl,
      MERIDIAN_STORAGE_FSYNC: "false",
      MERIDIAN_UNDELETE_WINDOW_HOURS: "0.0003", // about 1.1 s
      MERIDIAN_LOG_LEVEL: "warn",
    });
    const base = proc.info.registry!;
    const short = new OciClient(base);
    await short.pushRandomImage("short/app", "v1");
    await short.pushRandomImage("short/tag", "v1");
    await ok(await call("DELETE", "/repositories/short/app", undefined, base), 202);
    assert.equal((await short.fetch("/v2/short/tag/manifests/v1", { method: "DELETE" })).status, 202);
    await sleep(1_500);
    const repoRes = await call("POST", "/undelete", { json: { repo: "short/app" } }, base);
    const body = (await repoRes.clone().json()) as { errors: Array<{ message: string }> };
    await fails(repoRes, 403, "DENIED");
    assert.match(body.errors[0]!.message, /outside the undelete window/);
    await fails(
      await call("POST", "/undelete", { json: { repo: "short/tag", tag: "v1" } }, base),
      403,
      "DENIED",
    );
    assert.equal((await short.fetch("/v2/short/app/manifests/v1")).status, 404);
  });
});

describe("rules for every repository", () => {
  // The scope "" is stored under the key "C!" itself: prefix scans must include it.
  test('a rule for "" (every repository) survives another rule change', async (t) => {
    const local = cleanupStack(t);
    const other = await startTestNode(local, { nats: natsUrl, region: "scoped" });
    await ok(await call("PUT", "/rules", { json: { scope: "", tagMerge: "first-write" } }, other.url));
    await ok(await call("PUT", "/rules", { json: { scope: "zz/", tagMerge: "lww" } }, other.url));
    const rules = await ok<{ default: { tagMerge: string } }>(
      await call("GET", "/rules", undefined, other.url),
    );
    assert.equal(rules.default.tagMerge, "first-write");
  });
});

describe("artifacts", () => {
  test("this region's view of one artifact; malformed references", async () => {
    const image = await c.pushRandomImage("art/app", "v1");
    await c.pushManifest("art/app", "also", image.manifest);
    const here = await ok(await call("GET", `/artifacts/art/app@${image.digest}`));
    assert.deepEqual(here, {
      region: "test",
      repo: "art/app",
      digest: image.digest,
      present: true,
      tags: ["also", "v1"],
    });
    const elsewhere = await ok(await call("GET", `/artifacts/art/other@${image.digest}`));
    assert.deepEqual(elsewhere, {
      region: "test",
      repo: "art/other",
      digest: image.digest,
      present: false,
      tags: [],
    });
    await fails(await call("GET", "/artifacts/art/app"), 400, "DIGEST_INVALID");
    await fails(await call("GET", "/artifacts/art/app@sha256:short"), 400, "DIGEST_INVALID");
    await fails(await call("GET", `/artifacts/Art/App@${image.digest}`), 400, "NAME_INVALID");
    await fails(await call("GET", `/artifacts/@${image.digest}`), 400, "NAME_INVALID");
    // Percent-encoded paths are decoded before they are judged.
    const encoded = await ok(await call("GET", `/artifacts/art/app@${encodeURIComponent(image.digest)}`));
    assert.equal(encoded.present, true);
    await fails(await call("DELETE", "/repositories/art/app%3Fx"), 400, "NAME_INVALID");
    // A tag: the digest this region serves for it (mesh-client/locate.ts compares regions).
    const tag = await ok(await call("GET", "/artifacts/art/app:v1"));
    assert.equal(tag.digest, image.digest);
    assert.equal(tag.present, true);
    assert.equal(tag.tag, "v1");
    assert.equal(typeof tag.at, "string");
    assert.equal(tag.deleted, undefined);
    const never = await ok(await call("GET", "/artifacts/art/app:never"));
    assert.deepEqual(never, { region: "test", repo: "art/app", tag: "never", digest: null, present: false });
    assert.equal((await c.fetch("/v2/art/app/manifests/also", { method: "DELETE" })).status, 202);
    const gone = await ok(await call("GET", "/artifacts/art/app:also"));
    assert.equal(gone.digest, null);
    assert.equal(gone.present, false);
    assert.equal(typeof (gone.deleted as { at: string } | undefined)?.at, "string");
    await fails(await call("GET", "/artifacts/art/app:-bad"), 400, "MANIFEST_INVALID"); // TagInvalidError's OCI code
    await fails(await call("GET", "/artifacts/Art/App:v1"), 400, "NAME_INVALID");
    await fails(await call("GET", "/repositories/art%2Fapp%3F/tags/v1/history"), 400, "NAME_INVALID");
  });
});

test("undeleteWindowHours: default a week, MERIDIAN_UNDELETE_WINDOW_HOURS overrides, nonsense refused", () => {
  assert.equal(loadNodeConfig({ env: {} }).undeleteWindowHours, 168);
  assert.equal(loadNodeConfig({ env: { MERIDIAN_UNDELETE_WINDOW_HOURS: "2.5" } }).undeleteWindowHours, 2.5);
  assert.throws(() => loadNodeConfig({ env: { MERIDIAN_UNDELETE_WINDOW_HOURS: "soon" } }), ConfigError);
  assert.throws(() => loadNodeConfig({ env: { MERIDIAN_UNDELETE_WINDOW_HOURS: "0" } }), ConfigError);
});

describe("policies from the configuration file", () => {
  test("are stored at start, once: a restart with the same file changes nothing", async (t) => {
    const local = cleanupStack(t);
    const dir = tempDir(local, "meridian-policies-");
    const file = join(dir, "policies.yaml");
    writeFileSync(
      file,
      "name: from-file\nsource: a\ndestination: b\nrepositories: [prod/**]\n---\nname: second\nsource: '*'\ndestination: '*'\ntrigger: manual\n",
    );
    const dataDir = join(dir, "data");
    const first = await startTestNode(local, { nats: natsUrl, region: "cfg", dataDir, policiesFile: file });
    const stored = async (url: string) =>
      (
        await ok<{ policies: Array<{ name: string; updatedAt: string }> }>(
          await call("GET", "/policies", undefined, url),
        )
      ).policies;
    await eventually(async () => (await stored(first.url)).length === 2, 10_000, 50);
    const before = await stored(first.url);
    assert.deepEqual(
      before.map((p) => p.name),
      ["from-file", "second"],
    );
    await first.close();
    const again = await startTestNode(local, { nats: natsUrl, region: "cfg", dataDir, policiesFile: file });
    await sleep(500);
    assert.deepEqual(await stored(again.url), before, "unchanged policies are not written again");
  });

  test("a malformed file stops the start with every problem listed", () => {
    const dir = mkdtempSync(join(tmpdir(), "meridian-policies-"));
    const file = join(dir, "bad.yaml");
    writeFileSync(file, "name: x\nsource: A\ntrigger: sometimes\n");
    try {
      assert.throws(
        () => loadNodeConfig({ env: { MERIDIAN_POLICIES_FILE: file } }),
        (err: unknown) =>
          err instanceof ConfigError && /source/.test(err.message) && /trigger/.test(err.message),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
