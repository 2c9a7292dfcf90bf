/**
 * mesh-client/locate.ts and mesh-client/activity.ts against a real mesh of
 * three regions (separate processes, a TcpProxy on every replication link):
 * where a tag and a digest are after a push (present everywhere once
 * replicated; pending in a region whose worker is frozen; unknown for a
 * region whose node is frozen, within the deadline; failed where a
 * replication was given up on, with its reason); malformed references;
 * recent activity (a tag conflict, an alert, a replication failure, a GC
 * run) newest first, its limit, a region that does not answer.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { collectActivity } from "../../mesh-client/activity.js";
import { locate } from "../../mesh-client/locate.js";
import { NameInvalidError } from "../../protocol/errors.js";
import { type Mesh, parseMesh } from "../../protocol/mesh.js";
import { cleanupStack, eventually, runCli } from "../../testing/harness.js";
import { type ProxiedMesh, startProxiedMesh } from "../../testing/mesh.js";
import { OciClient } from "../../testing/oci-client.js";

const cleanup = cleanupStack({ after });
let pmesh: ProxiedMesh;
let mesh: Mesh;
const client = (region: string) => new OciClient(pmesh.regions.get(region)!.registry);

/** Freeze a process (SIGSTOP) until the returned function (also run at cleanup) resumes it. */
function freeze(pid: number): () => void {
  process.kill(pid, "SIGSTOP");
  let frozen = true;
  const resume = () => {
    if (!frozen) return;
    frozen = false;
    try {
      process.kill(pid, "SIGCONT");
    } catch {
      // already gone
    }
  };
  cleanup(resume);
  return resume;
}

const states = (l: { regions: Array<{ region: string; state: string }> }) =>
  Object.fromEntries(l.regions.map((r) => [r.region, r.state]));

before(async () => {
  pmesh = await startProxiedMesh(cleanup, ["a", "b", "c"]);
  mesh = parseMesh(JSON.parse(readFileSync(pmesh.meshFile, "utf8")));
});

describe("locate", () => {
  let first: string;

  test("a tag and a digest pushed in one region: present everywhere once replicated, with the digest each serves", async () => {
    first = (await client("a").pushRandomImage("app/one", "v1")).digest;
    await eventually(
      async () => Object.values(states(await locate(mesh, "app/one:v1", {}))).every((s) => s === "present"),
      30_000,
      200,
    );
    const byTag = await locate(mesh, "app/one:v1", {});
    assert.equal(byTag.repository, "app/one");
    assert.equal(byTag.tag, "v1");
    assert.equal(byTag.digest, first);
    assert.deepEqual(
      byTag.regions.map((r) => [r.region, r.state, r.digest]),
      [
        ["a", "present", first],
        ["b", "present", first],
        ["c", "present", first],
      ],
    );
    const byDigest = await locate(mesh, `app/one@${first}`, {});
    assert.equal(byDigest.tag, undefined);
    assert.deepEqual(states(byDigest), { a: "present", b: "present", c: "present" });
    assert.match(byDigest.regions[0]!.detail, /tags: v1/);
    // Never pushed anywhere: absent everywhere, no digest.
    const none = await locate(mesh, "app/one:never", {});
    assert.equal(none.digest, undefined);
    assert.deepEqual(states(none), { a: "absent", b: "absent", c: "absent" });
  });

  test("a region whose worker is frozen is pending for the new digest, serving the old one", async () => {
    const resume = freeze(pmesh.regions.get("b")!.worker.child.pid!);
    const second = (await client("a").pushRandomImage("app/one", "v1")).digest;
    await eventually(
      async () => (await locate(mesh, "app/one:v1", {})).regions[2]!.digest === second,
      30_000,
      200,
    );
    const seen = await locate(mesh, "app/one:v1", {});
    assert.equal(seen.digest, second, "two regions serve the new digest: the majority");
    const b = seen.regions.find((r) => r.region === "b")!;
    assert.equal(b.state, "pending");
    assert.equal(b.digest, first, "b still serves the digest it had");
    assert.match(b.detail, /policy/);
    assert.equal(states(await locate(mesh, `app/one@${second}`, {})).b, "pending");
    resume();
    await eventually(async () => states(await locate(mesh, "app/one:v1", {})).b === "present", 30_000, 200);
  });

  test("a region whose processes are all frozen is unknown, within the deadline", async () => {
    const c = pmesh.regions.get("c")!;
    const resumes = [c.nats.pid, c.node.child.pid!, c.peer.child.pid!, c.worker.child.pid!].map(freeze);
    const resume = () => {
      for (const r of resumes) r();
    };
    const started = Date.now();
    const seen = await locate(mesh, "app/one:v1", { timeoutMs: 1_000 });
    const took = Date.now() - started;
    resume();
    assert.deepEqual(states(seen), { a: "present", b: "present", c: "unknown" });
    assert.match(seen.regions[2]!.detail, /did not answer within 1000 ms/);
    assert.ok(took < 10_000, `answered in ${took} ms`);
  });

  test("a replication given up on is failed, with its reason", async () => {
    // b's and c's workers see a's events but cannot copy their content until the links heal
    // (nor from each other); meanwhile the layer's file in a's store becomes a directory: a's
    // peer fails reading it, so the replication is given up on.
    const links = ["b", "c"].map((r) => pmesh.proxies.get(r)!.get("a")!.grpc);
    for (const link of links) {
      link.blackhole();
      cleanup(() => link.heal());
    }
    const poison = await client("a").pushRandomImage("poison/app", "v1");
    const encoded = poison.layers[0]!.digest.slice("sha256:".length);
    const file = join(pmesh.regions.get("a")!.dir, "store", "blobs", "sha256", encoded.slice(0, 2), encoded);
    await rm(file);
    await mkdir(join(file, "not-a-file"), { recursive: true });
    for (const link of links) link.heal();
    let last: unknown;
    await eventually(
      async () => {
        const seen = await locate(mesh, "poison/app:v1", {});
        last = seen;
        return states(seen).c === "failed";
      },
      45_000,
      500,
    ).catch((err: Error) => {
      throw new Error(`${err.message}: ${JSON.stringify(last)}`);
    });
    const c = (await locate(mesh, `poison/app@${poison.digest}`, {})).regions.find((r) => r.region === "c")!;
    assert.equal(c.state, "failed");
    assert.match(c.detail, /internal error/);
    // The CLI says the same, for the tag too.
    const cli = await runCli(["replication", "status", "poison/app:v1", "--mesh", pmesh.meshFile, "--json"]);
    assert.equal(cli.code, 0, cli.stderr);
    const out = JSON.parse(cli.stdout) as {
      tag: string;
      digest: string;
      regions: Array<{ region: string; state: string }>;
    };
    assert.equal(out.tag, "v1");
    assert.equal(out.digest, poison.digest);
    assert.equal(out.regions.find((r) => r.region === "c")?.state, "failed");
  });

  test("malformed references are refused before any region is asked", async () => {
    for (const bad of ["App/One:v1", "app/one:bad tag", "app/one@sha256:nope", "app/one", ""])
      await assert.rejects(locate(mesh, bad, {}), (err: Error) => {
        assert.ok(
          err instanceof NameInvalidError ||
            ["TAG_INVALID", "DIGEST_INVALID"].includes((err as { code?: string }).code ?? ""),
          `${bad}: ${err.message}`,
        );
        return true;
      });
    const cli = await runCli(["replication", "status", "App/One:v1", "--mesh", pmesh.meshFile]);
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, /invalid repository name/);
  });
});

describe("activity", () => {
  test("a conflict, an alert, a failed replication and a GC run, newest first; the limit; a region that does not answer", async () => {
    // Both a and c move one tag while c is cut off: one write loses, a conflict is recorded.
    pmesh.partition("c");
    cleanup(() => pmesh.heal("c"));
    await client("a").pushRandomImage("app/conflict", "v1");
    await client("c").pushRandomImage("app/conflict", "v1");
    pmesh.heal("c");
    // An alert: a scrub of b finds a blob whose bytes changed (and repairs it from another region).
    const victim = await client("b").pushRandomImage("app/scrubbed", "v1");
    // Replicated first: a and c copy its bytes from b, so they must not change before.
    await eventually(
      async () =>
        Object.values(states(await locate(mesh, "app/scrubbed:v1", {}))).every((x) => x === "present"),
      30_000,
      200,
    );
    const encoded = victim.layers[0]!.digest.slice("sha256:".length);
    const file = join(pmesh.regions.get("b")!.dir, "store", "blobs", "sha256", encoded.slice(0, 2), encoded);
    const bytes = readFileSync(file);
    bytes[0] = bytes[0]! ^ 0xff;
    writeFileSync(file, bytes);
    const b = pmesh.regions.get("b")!.registry;
    assert.equal(
      (
        await fetch(`${b}/admin/v1/scrub/runs`, {
          method: "POST",
          body: "{}",
          headers: { "content-type": "application/json" },
        })
      ).status,
      202,
    );
    const gc = await fetch(`${b}/admin/v1/gc/runs`, {
      method: "POST",
      body: JSON.stringify({ dryRun: true }),
      headers: { "content-type": "application/json" },
    });
    assert.equal(gc.status, 202);

    // A policy run: a manual policy a→b run now (the full mirror carries on beside it).
    const a = pmesh.regions.get("a")!.registry;
    const policy = await fetch(`${a}/admin/v1/policies/manual-ab`, {
      method: "PUT",
      body: JSON.stringify({ source: "a", destination: "b", repositories: ["app/**"], trigger: "manual" }),
      headers: { "content-type": "application/json" },
    });
    assert.equal(policy.status, 200, await policy.text());
    const run = await fetch(`${a}/admin/v1/policies/manual-ab/run`, { method: "POST" });
    assert.equal(run.status, 202, await run.text());

    const kinds = (items: Array<{ kind: string }>) => new Set(items.map((i) => i.kind));
    await eventually(
      async () => {
        const { items, unreachable } = await collectActivity(mesh, {});
        const k = kinds(items);
        return (
          unreachable.length === 0 &&
          ["conflict", "alert", "replication-failed", "gc-run", "policy-run"].every((x) => k.has(x))
        );
      },
      45_000,
      500,
    );
    const { items, unreachable } = await collectActivity(mesh, {});
    assert.deepEqual(unreachable, []);
    const conflict = items.find((i) => i.kind === "conflict")!;
    assert.match(conflict.summary, /^app\/conflict:v1: /);
    assert.equal((conflict.detail as { repo: string }).repo, "app/conflict");
    assert.match(items.find((i) => i.kind === "alert")!.summary, /./);
    assert.equal(items.find((i) => i.kind === "gc-run")!.region, "b");
    assert.match(items.find((i) => i.kind === "policy-run")!.summary, /^policy manual-ab run \w+ in b/);
    assert.match(
      String(items.find((i) => i.kind === "replication-failed")!.detail?.reason),
      /internal error/,
    );
    // Newest first, each event once although every region lists it.
    const times = items.map((i) => i.at);
    assert.deepEqual(times, [...times].sort().reverse());
    assert.equal(new Set(items.map((i) => i.id)).size, items.length);

    // The limit keeps the newest (compared with a list read right after: the regions keep
    // recording, e.g. a scrub's repair alert may land between two reads).
    await eventually(
      async () => {
        const two = await collectActivity(mesh, { limit: 2 });
        const all = await collectActivity(mesh, { limit: 100_000 });
        return (
          two.items.length === 2 &&
          JSON.stringify(two.items) === JSON.stringify(all.items.slice(0, 2)) &&
          all.items.length >= items.length
        );
      },
      10_000,
      200,
    );

    await eventually(
      async () =>
        (await collectActivity(mesh, { regions: ["a", "c"] })).items.some(
          (i) => i.kind === "gc-run" && i.region === "b",
        ),
      30_000,
      200,
    );
    // One region's processes frozen: listed as unreachable, the others still answer (what it saw replicated).
    const frozen = pmesh.regions.get("b")!;
    const resumes = [
      frozen.nats.pid,
      frozen.node.child.pid!,
      frozen.peer.child.pid!,
      frozen.worker.child.pid!,
    ].map(freeze);
    const resume = () => {
      for (const r of resumes) r();
    };
    const started = Date.now();
    const partial = await collectActivity(mesh, { timeoutMs: 1_000 });
    const took = Date.now() - started;
    resume();
    assert.deepEqual(partial.unreachable, ["b"]);
    assert.ok(
      partial.items.some((i) => i.kind === "gc-run" && i.region === "b"),
      "b's run, as a and c have it",
    );
    assert.ok(took < 10_000, `answered in ${took} ms`);
    assert.deepEqual((await collectActivity(mesh, { regions: ["a", "nowhere"] })).unreachable, ["nowhere"]);
  });

  test("the admin route's query is checked and its limit capped", async () => {
    const a = pmesh.regions.get("a")!.registry;
    for (const q of ["limit=0", "limit=501", "limit=abc", "kind=nope", "other=1", "limit=1&limit=2"]) {
      const res = await fetch(`${a}/admin/v1/activity?${q}`);
      assert.equal(res.status, 400, q);
      assert.equal(
        ((await res.json()) as { errors: Array<{ code: string }> }).errors[0]!.code,
        "UNSUPPORTED",
      );
    }
    const res = await fetch(`${a}/admin/v1/activity?limit=1&kind=gc-run,conflict`);
    assert.equal(res.status, 200);
    const body = (await res.json()) as { region: string; items: Array<{ kind: string }> };
    assert.equal(body.region, "a");
    assert.equal(body.items.length, 1);
    assert.ok(["gc-run", "conflict"].includes(body.items[0]!.kind));
  });
});
