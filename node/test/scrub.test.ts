/**
 * Scrubbing with repair (issue 15, item 5) against real processes: `meridian
 * up --auth` with regions a and b (nodes fetching on miss, as in
 * production). An image pushed to a replicates to b; a byte of b's stored
 * layer (and then of its manifest) is flipped on disk, as bit rot would.
 *
 * - `meridian scrub run --region b --no-repair` finds the layer, quarantines
 *   it (moved out of blobs/, kept under quarantine/) and exits 1 (a corrupt
 *   blob stays unrepaired); a pull of the layer from b then returns the right
 *   bytes (fetched from a: its digest is checked here), and that pull's
 *   verified copy is b's again.
 * - `meridian scrub run --region b` repairs on its own: the files hold the
 *   right bytes again, `blob-corrupt` and `blob-repaired` alerts are in the
 *   log, and b's /metrics count them.
 * - A manifest whose stored bytes are wrong, read by a node with a cold cache
 *   (restarted): never served; the node quarantines it, serves it from a,
 *   and has it repaired in the background.
 * - The admin route is a system admin's: anonymous is 401, a user who is not
 *   a system admin is 403 DENIED, and a bad body is 400.
 *
 * The scrub's background pass is off here (MERIDIAN_SCRUB_INTERVAL_HOURS 0),
 * so only the runs the test asks for touch the store.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { cleanupStack, eventually, runCli, tempDir } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";
import { errorCode, OciClient } from "../../testing/oci-client.js";

const cleanup = cleanupStack({ after });
let mesh: RunningMesh;
let admin: string;
let pushed: Awaited<ReturnType<OciClient["pushRandomImage"]>>;
const REPO = "scrub/app";

const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
const registry = (region: string) => mesh.regions.get(region)!.registry;
const client = (region: string) => new OciClient(registry(region), admin);
const cli = (args: string[]) => runCli([...args, "--data", mesh.dataDir], 60_000);
const sha = (bytes: Uint8Array) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`;

/** Where b's filesystem store keeps `digest` (or its quarantined copies). */
function blobFile(region: string, digest: string): string {
  const hex = digest.slice("sha256:".length);
  return join(mesh.dataDir, region, "store", "blobs", "sha256", hex.slice(0, 2), hex);
}
function quarantined(region: string, digest: string): string[] {
  const dir = join(mesh.dataDir, region, "store", "quarantine", "sha256");
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => f.startsWith(`${digest.slice("sha256:".length)}.`));
}
function flipByte(file: string, at: number): void {
  const bytes = readFileSync(file);
  bytes[at] = bytes[at]! ^ 0xff;
  writeFileSync(file, bytes);
}

/** A sample's value from a node's /metrics (0 when absent). */
async function metric(base: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (want.every((w) => line.includes(w))) return Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return 0;
}

before(async () => {
  mesh = await startMesh(cleanup, ["a", "b"], undefined, ["--auth"], {
    MERIDIAN_FETCH_ON_MISS: "proxy",
    MERIDIAN_SCRUB_INTERVAL_HOURS: "0",
    MERIDIAN_SCRUB_BYTES_PER_SECOND: String(64 << 20),
  });
  admin = basic("admin", readFileSync(mesh.adminPasswordFile!, "utf8").trim());
  pushed = await client("a").pushRandomImage(REPO, "v1", 1, 300_000);
  // Replicated to b (asked with only-if-cached: what b holds itself, not a fetch from a).
  await eventually(
    async () =>
      (
        await client("b").fetch(`/v2/${REPO}/blobs/${pushed.layers[0]!.digest}`, {
          method: "HEAD",
          headers: { "cache-control": "only-if-cached" },
        })
      ).status === 200 && existsSync(blobFile("b", pushed.layers[0]!.digest)),
    30_000,
    100,
  );
  await eventually(
    async () =>
      (
        await client("b").fetch(`/v2/${REPO}/manifests/v1`, {
          method: "HEAD",
          headers: { "cache-control": "only-if-cached" },
        })
      ).status === 200,
    30_000,
    100,
  );
});

describe("scrub", () => {
  test("a flipped byte is found and quarantined; a pull from b still gets the right bytes (from a)", async () => {
    const layer = pushed.layers[0]!.digest;
    flipByte(blobFile("b", layer), 1000);
    assert.notEqual(sha(readFileSync(blobFile("b", layer))), layer, "the stored layer is corrupt now");

    const r = await cli(["scrub", "run", "--region", "b", "--no-repair"]);
    assert.equal(r.code, 1, `a corrupt blob left unrepaired exits 1\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, /scrub \S+ of region b \(started/);
    assert.match(r.stdout, /finished: checked \d+\/\d+ blobs, .*1 corrupt, 0 repaired/);
    assert.match(r.stdout, new RegExp(`${layer} \\(${REPO}\\): unrepaired`));
    assert.equal(existsSync(blobFile("b", layer)), false, "moved out of blobs/");
    assert.equal(quarantined("b", layer).length, 1, "kept under quarantine/");

    // The pull: b lacks the layer now, so it is fetched from a, verified, and stored again.
    const res = await client("b").fetch(`/v2/${REPO}/blobs/${layer}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("meridian-fetched-from"), "a");
    const body = Buffer.from(await res.arrayBuffer());
    assert.equal(sha(body), layer, "the client got the right bytes");
    await eventually(async () => existsSync(blobFile("b", layer)), 10_000, 50);
    assert.equal(sha(readFileSync(blobFile("b", layer))), layer, "b holds the right bytes again");
  });

  test("a scrub run repairs a corrupt layer and manifest from a: right bytes, alerts and metrics", async () => {
    const layer = pushed.layers[0]!.digest;
    const manifest = pushed.digest;
    flipByte(blobFile("b", layer), 7);
    flipByte(blobFile("b", manifest), 3);
    const repairedBefore = await metric(registry("b"), "meridian_scrub_repairs_total", {
      outcome: "repaired",
    });

    const r = await cli(["scrub", "run", "--region", "b"]);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /2 corrupt, 2 repaired/);
    assert.match(r.stdout, new RegExp(`${layer} \\(${REPO}\\): repaired from a`));
    assert.match(r.stdout, new RegExp(`${manifest} \\(${REPO}\\): repaired from a`));
    assert.equal(sha(readFileSync(blobFile("b", layer))), layer, "the layer's file is right again");
    assert.equal(sha(readFileSync(blobFile("b", manifest))), manifest, "the manifest's file is right again");
    assert.equal(quarantined("b", layer).length, 2, "both corrupt copies of the layer kept aside");

    // b serves its own (repaired) copy: only-if-cached asks for what b holds.
    const res = await client("b").fetch(`/v2/${REPO}/blobs/${layer}`, {
      headers: { "cache-control": "only-if-cached" },
    });
    assert.equal(res.status, 200);
    assert.equal(sha(Buffer.from(await res.arrayBuffer())), layer);

    // The alerts: in b's log (and replicated, like every alert).
    const { alerts } = (await (await client("b").fetch("/admin/v1/alerts")).json()) as {
      alerts: Array<{ kind: string; repo?: string; origin: string; detail?: Record<string, unknown> }>;
    };
    const of = (kind: string, digest: string) =>
      alerts.filter((a) => a.kind === kind && a.detail?.digest === digest && a.origin === "b");
    assert.equal(of("blob-corrupt", layer).length, 2, "one corrupt alert per finding of the layer");
    assert.equal(of("blob-corrupt", manifest).length, 1);
    assert.equal(of("blob-repaired", layer).length, 1);
    assert.equal(of("blob-repaired", manifest)[0]?.detail?.from, "a");
    assert.equal(of("blob-repaired", layer)[0]?.repo, REPO);

    // The metrics, by b's node.
    const b = registry("b");
    assert.equal(
      (await metric(b, "meridian_scrub_repairs_total", { outcome: "repaired" })) - repairedBefore,
      2,
    );
    assert.equal(await metric(b, "meridian_scrub_repairs_total", { outcome: "unrepaired" }), 1);
    assert.equal(await metric(b, "meridian_scrub_blobs_total", { result: "corrupt" }), 3);
    assert.ok((await metric(b, "meridian_scrub_blobs_total", { result: "ok" })) >= 2);
    assert.ok((await metric(b, "meridian_scrub_bytes_total")) >= 2 * 300_000);
    assert.equal(await metric(b, "meridian_scrub_runs_total", { trigger: "manual", outcome: "ok" }), 2);
    assert.ok((await metric(b, "meridian_scrub_last_run_timestamp_seconds")) > 0);

    // A run with nothing corrupt: exit 0, nothing repaired.
    const clean = await cli(["scrub", "run", "--region", "b", "--json"]);
    assert.equal(clean.code, 0, clean.stderr);
    const run = JSON.parse(clean.stdout) as {
      state: string;
      corrupt: number;
      checked: number;
      blobs: number;
    };
    assert.equal(run.state, "finished");
    assert.equal(run.corrupt, 0);
    assert.equal(run.checked, run.blobs);
  });

  test("a manifest whose stored bytes are wrong is never served: the node notices on read, serves it from a, and repairs it", async () => {
    const manifest = pushed.digest;
    // A fresh node process: its manifest cache is cold, so the GET reads the stored bytes.
    const stop = await cli(["region", "stop", "b", "--only", "node"]);
    assert.equal(stop.code, 0, stop.stderr);
    flipByte(blobFile("b", manifest), 11);
    const start = await cli(["region", "start", "b"]);
    assert.equal(start.code, 0, start.stderr);
    const quarantinedBefore = quarantined("b", manifest).length;

    const res = await client("b").fetch(`/v2/${REPO}/manifests/${manifest}`, {
      headers: { accept: "application/vnd.oci.image.manifest.v1+json" },
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("meridian-fetched-from"), "a", "served from a, not from b's bad copy");
    assert.equal(sha(Buffer.from(await res.arrayBuffer())), manifest, "the client got the right bytes");
    assert.equal(quarantined("b", manifest).length, quarantinedBefore + 1, "the bad copy was moved aside");
    // Repaired in the background from a: b's file is right again and b serves its own copy.
    await eventually(
      async () =>
        existsSync(blobFile("b", manifest)) && sha(readFileSync(blobFile("b", manifest))) === manifest,
      20_000,
      100,
    );
    const own = await client("b").fetch(`/v2/${REPO}/manifests/${manifest}`, {
      headers: { accept: "application/vnd.oci.image.manifest.v1+json", "cache-control": "only-if-cached" },
    });
    assert.equal(own.status, 200);
    assert.equal(own.headers.get("meridian-fetched-from"), null);
    assert.equal(sha(Buffer.from(await own.arrayBuffer())), manifest);
    const { runs } = (await (await client("b").fetch("/admin/v1/scrub/runs")).json()) as {
      runs: Array<{ trigger: string; findings: Array<{ digest: string; outcome: string; from?: string }> }>;
    };
    const read = runs.filter((r) => r.trigger === "read");
    assert.deepEqual(
      read.flatMap((r) => r.findings).map((f) => [f.digest, f.outcome, f.from]),
      [[manifest, "repaired", "a"]],
    );
  });

  test("the scrub's admin route is a system admin's: 401 anonymous, 403 DENIED otherwise, 400 bad body", async () => {
    const work = tempDir(cleanup);
    const passwordFile = join(work, "dev-password");
    writeFileSync(passwordFile, "a developer's password\n");
    const add = await cli(["user", "add", "dev", "--password-file", passwordFile, "--region", "b"]);
    assert.equal(add.code, 0, add.stderr);
    const b = registry("b");
    const runsBefore = (
      (await (await client("b").fetch("/admin/v1/scrub/runs")).json()) as { runs: unknown[] }
    ).runs.length;
    const post = (authorization: string | undefined, body = "{}") =>
      fetch(`${b}/admin/v1/scrub/runs`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          ...(authorization === undefined ? {} : { authorization }),
        },
        body,
      });
    const anonymous = await post(undefined);
    assert.equal(anonymous.status, 401);
    assert.equal(await errorCode(anonymous), "UNAUTHORIZED");
    const dev = await post(basic("dev", "a developer's password"));
    assert.equal(dev.status, 403);
    assert.equal(await errorCode(dev), "DENIED");
    const runs = await fetch(`${b}/admin/v1/scrub/runs`, {
      headers: { authorization: basic("dev", "a developer's password") },
    });
    assert.equal(runs.status, 403, "reading runs is a system admin's too");
    const bad = await post(admin, JSON.stringify({ repair: "yes" }));
    assert.equal(bad.status, 400);
    assert.equal(await errorCode(bad), "UNSUPPORTED");
    const unknown = await client("b").fetch("/admin/v1/scrub/runs/nope");
    assert.equal(unknown.status, 404);
    // Refused calls started nothing.
    const list = (await (await client("b").fetch("/admin/v1/scrub/runs")).json()) as { runs: unknown[] };
    assert.equal(list.runs.length, runsBefore);
  });
});
