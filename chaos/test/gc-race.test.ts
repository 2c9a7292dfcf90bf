/**
 * Seeded race of garbage collection against traffic on three real regions
 * (`meridian up --regions a,b,c`, issue 15): while every region runs GC in a
 * loop (a 5 s grace and a 5 s undelete window, so garbage ages within the
 * test), images are pushed, pushed again with the very same bytes, tagged,
 * deleted and replicated between the regions, from a small pool of shared
 * layers so collected bytes keep coming back. Afterwards every image that
 * should exist is pulled from every region (fetch on miss off: each region's
 * own store) and every byte compared: 0 live bytes lost. The seed is printed
 * (MERIDIAN_SEED replays one). `meridian gc run` is run as an operator would
 * at the end, a dry run and a real one.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { waitWritable } from "../../testing/faults.js";
import { cleanupStack, eventually, runCli } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";
import { OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, OciClient, sha256 } from "../../testing/oci-client.js";

const REGIONS = ["a", "b", "c"] as const;
const SEED = Number(process.env.MERIDIAN_SEED || Math.floor(Math.random() * 1_000_000_000));
const OPS_PER_REGION = 16;
const GRACE_S = 5;
/** The store of every region: the filesystem, or (gc-race-s3.test.ts sets it) `up --s3`'s buckets. */
const STORE = process.env.MERIDIAN_GC_RACE_STORE === "s3" ? "s3" : "fs";

/** mulberry32: a small deterministic generator. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Image {
  repo: string;
  digest: string;
  manifestBytes: Buffer;
  blobs: Array<{ digest: string; bytes: Buffer; mediaType: string }>;
}

const cleanup = cleanupStack({ after });
let mesh: RunningMesh;
const client = (region: string) => new OciClient(mesh.regions.get(region)!.registry);

/** Push every blob, then the manifest by tag; the same bytes every time for one image. */
async function pushExact(c: OciClient, image: Image, tag: string): Promise<void> {
  for (const blob of image.blobs) await c.pushBlob(image.repo, blob.bytes, blob.mediaType);
  await c.pushManifest(image.repo, tag, image.manifestBytes.toString());
}

/** Retry a client operation the sweep made fail (a link dropped under it), as clients do. */
async function retried(what: string, step: () => Promise<void>): Promise<void> {
  let last: unknown;
  for (let attempt = 0; attempt < 6; attempt++) {
    try {
      await step();
      return;
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw new Error(`${what} never went through: ${(last as Error).message}`);
}

async function gcRun(base: string): Promise<{ collected: number; restored: number }> {
  const res = await fetch(`${base}/admin/v1/gc/runs`, { method: "POST", body: "" });
  assert.equal(res.status, 202);
  const { runId } = (await res.json()) as { runId: string };
  for (;;) {
    const state = (await (await fetch(`${base}/admin/v1/gc/runs/${runId}`)).json()) as {
      state: string;
      error?: string;
      result?: { collected: number; restored: number };
    };
    if (state.state === "failed") throw new Error(`gc failed: ${state.error}`);
    if (state.state === "ok") return state.result!;
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe(`gc racing traffic on three regions, ${STORE} store (seed ${SEED})`, () => {
  before(async () => {
    process.stderr.write(`gc race seed ${SEED} (replay: MERIDIAN_SEED=${SEED})\n`);
    // Inherited by the nodes `up` starts (node/config.ts gc.*, undeleteWindowHours).
    process.env.MERIDIAN_GC_GRACE_MINUTES = String(GRACE_S / 60);
    process.env.MERIDIAN_GC_SETTLE_MS = "2000";
    process.env.MERIDIAN_UNDELETE_WINDOW_HOURS = String(GRACE_S / 3600);
    // The workers' delete breaker would hold this traffic's deletes (most of a repository's tags
    // in seconds) and the replication behind them: it is another test's subject.
    process.env.MERIDIAN_DELETE_BREAKER_MIN_TAGS = "1000";
    mesh = await startMesh(cleanup, [...REGIONS], undefined, STORE === "s3" ? ["--s3"] : []);
    for (const r of mesh.regions.values()) await waitWritable(r.registry);
  });

  test("0 live bytes lost: every image that should exist pulls intact from every region", async () => {
    const random = prng(SEED);
    const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
    const pool = Array.from({ length: 8 }, (_, i) =>
      Buffer.from(
        Array.from({ length: 1024 + Math.floor(random() * 4096) }, () => Math.floor(random() * 256)).concat(
          i,
        ),
      ),
    );
    let nonce = 0;
    const makeImage = (repo: string): Image => {
      const config = Buffer.from(JSON.stringify({ os: "linux", seed: SEED, nonce: nonce++ }));
      const layers = [pick(pool), ...(random() < 0.5 ? [pick(pool)] : [])].filter(
        (l, i, all) => all.indexOf(l) === i,
      );
      const descriptor = (bytes: Buffer, mediaType: string) => ({
        mediaType,
        digest: sha256(bytes),
        size: bytes.byteLength,
      });
      const manifestBytes = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: OCI_MANIFEST,
          config: descriptor(config, OCI_CONFIG),
          layers: layers.map((l) => descriptor(l, OCI_LAYER)),
        }),
      );
      return {
        repo,
        digest: sha256(manifestBytes),
        manifestBytes,
        blobs: [
          { digest: sha256(config), bytes: config, mediaType: OCI_CONFIG },
          ...layers.map((l) => ({ digest: sha256(l), bytes: l, mediaType: OCI_LAYER })),
        ],
      };
    };
    // What should exist: "repo:tag" → image. Each region writes only its own repositories,
    // so no two regions race on one tag (the tag merge is another test's subject).
    const expected = new Map<string, Image>();
    const made: Image[] = [];
    // The plan, drawn up front from the seed so a replay does the same operations.
    type Op = { region: string; kind: "push" | "repush" | "tag" | "delete"; pause: number; roll: number };
    const plan: Op[] = [];
    for (let i = 0; i < OPS_PER_REGION; i++)
      for (const region of REGIONS) {
        const r = random();
        const kind = r < 0.4 ? "push" : r < 0.6 ? "repush" : r < 0.75 ? "tag" : "delete";
        plan.push({ region, kind, pause: Math.floor(random() * 600), roll: random() });
      }

    let stop = false;
    const gcStats = { runs: 0, collected: 0, restored: 0 };
    const gcErrors: string[] = [];
    const gcLoops = REGIONS.map(async (region) => {
      while (!stop) {
        try {
          const r = await gcRun(mesh.regions.get(region)!.registry);
          gcStats.runs++;
          gcStats.collected += r.collected;
          gcStats.restored += r.restored;
        } catch (err) {
          gcErrors.push(`${region}: ${(err as Error).message}`);
          return;
        }
      }
    });

    const traffic = REGIONS.map(async (region) => {
      const c = client(region);
      const mine = () =>
        [...expected.entries()].filter(([, image]) => image.repo.startsWith(`gc/${region}/`));
      for (const op of plan.filter((o) => o.region === region)) {
        await new Promise((r) => setTimeout(r, op.pause));
        const repo = `gc/${region}/app${Math.floor(op.roll * 3)}`;
        const tag = `t${Math.floor(op.roll * 1000) % 4}`;
        const ours = mine();
        if (op.kind === "push" || ours.length === 0) {
          const image = made.length > 0 && op.roll < 0.3 ? { ...pick(made), repo } : makeImage(repo);
          made.push(image);
          await retried(`push ${repo}:${tag}`, () => pushExact(c, image, tag));
          expected.set(`${repo}:${tag}`, image);
        } else if (op.kind === "repush") {
          const [key, image] = pick(ours);
          await retried(`re-push ${key}`, () => pushExact(c, image, key.split(":")[1]!));
          expected.set(key, image);
        } else if (op.kind === "tag") {
          const [, image] = pick(ours);
          const newTag = `t${Math.floor(op.roll * 97) % 6}`;
          await retried(`tag ${image.repo}:${newTag}`, async () => {
            await c.pushManifest(image.repo, newTag, image.manifestBytes.toString());
          });
          expected.set(`${image.repo}:${newTag}`, image);
        } else {
          const [, image] = pick(ours);
          const res = await c.fetch(`/v2/${image.repo}/manifests/${image.digest}`, { method: "DELETE" });
          assert.equal(res.status, 202, `delete ${image.repo}@${image.digest}`);
          for (const [key, other] of expected)
            if (other.repo === image.repo && other.digest === image.digest) expected.delete(key);
        }
      }
    });
    try {
      await Promise.all(traffic);
      // Past the grace and undelete window, so what was deleted during the traffic is garbage now.
      await new Promise((r) => setTimeout(r, GRACE_S * 1000 + 500));
    } finally {
      stop = true;
      await Promise.all(gcLoops);
    }
    assert.deepEqual(gcErrors, [], "every gc run finished ok");

    // Every region holds every image that should exist (replication done)…
    for (const region of REGIONS) {
      const c = client(region);
      for (const [key, image] of expected) {
        const [repo, tag] = key.split(":") as [string, string];
        await eventually(
          async () => {
            const res = await c.fetch(`/v2/${repo}/manifests/${tag}`, {
              method: "HEAD",
              headers: { accept: OCI_MANIFEST },
            });
            return res.status === 200 && res.headers.get("docker-content-digest") === image.digest;
          },
          60_000,
          200,
        ).catch(async () => {
          const res = await c.fetch(`/v2/${repo}/manifests/${tag}`, {
            method: "HEAD",
            headers: { accept: OCI_MANIFEST },
          });
          const blobs = [];
          for (const blob of image.blobs) {
            const a = await client(repo.split("/")[1]!).fetch(`/v2/${repo}/blobs/${blob.digest}`, {
              method: "HEAD",
            });
            blobs.push(`${blob.digest.slice(7, 19)} at origin: ${a.status}`);
          }
          const log = (f: string) => {
            try {
              return readFileSync(join(mesh.dataDir, f), "utf8").split("\n").slice(-40).join("\n");
            } catch (err) {
              return String(err);
            }
          };
          process.stderr.write(
            `${region} ${key}: ${res.status} ${res.headers.get("docker-content-digest")}; ${blobs.join(", ")}\n${log(`${region}/worker.log`)}\n`,
          );
          assert.fail(`region ${region} never showed ${key} at ${image.digest} (seed ${SEED})`);
        });
      }
    }
    // …one more collection everywhere, then every byte of every image from every region.
    for (const region of REGIONS) {
      const r = await gcRun(mesh.regions.get(region)!.registry);
      gcStats.collected += r.collected;
    }
    let bytes = 0;
    for (const region of REGIONS) {
      const c = client(region);
      for (const [key, image] of expected) {
        const [repo, tag] = key.split(":") as [string, string];
        const m = await c.fetch(`/v2/${repo}/manifests/${tag}`, { headers: { accept: OCI_MANIFEST } });
        assert.equal(m.status, 200, `${region} ${key} (seed ${SEED})`);
        assert.ok(
          Buffer.from(await m.arrayBuffer()).equals(image.manifestBytes),
          `${region} ${key} manifest`,
        );
        for (const blob of image.blobs) {
          const b = await c.fetch(`/v2/${repo}/blobs/${blob.digest}`);
          assert.equal(b.status, 200, `${region} ${key} blob ${blob.digest} lost (seed ${SEED})`);
          const got = Buffer.from(await b.arrayBuffer());
          assert.ok(got.equals(blob.bytes), `${region} ${key} blob ${blob.digest} bytes (seed ${SEED})`);
          bytes += got.byteLength;
        }
      }
    }
    process.stderr.write(
      `gc race seed ${SEED}: ${expected.size} images × ${REGIONS.length} regions intact (${bytes} bytes), ${gcStats.runs} gc runs collected ${gcStats.collected} blobs, ${gcStats.restored} put back\n`,
    );
    assert.ok(expected.size > 0);
    assert.ok(gcStats.collected > 0, "the runs collected garbage (deleted images)");

    // The operator's view: `meridian gc run` on region b, a dry run then a real one.
    const dry = await runCli(["gc", "run", "--region", "b", "--dry-run", "--data", mesh.dataDir]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(
      dry.stdout,
      /^gc run gc-\S+ in region b \(dry run\): grace 5\.0 s, undelete window 5\.0 s$/m,
    );
    assert.match(
      dry.stdout,
      /^done \(dry run\): \d+ blobs, \d+ bytes collectable of \d+ scanned; nothing changed/m,
    );
    const real = await runCli(["gc", "run", "--region", "b", "--now", "--data", mesh.dataDir]);
    assert.equal(real.code, 0, real.stderr);
    assert.match(real.stdout, /grace 0\.0 s, undelete window 0\.0 s/);
    assert.match(real.stdout, /^done: \d+ blobs, \d+ bytes reclaimed of \d+ scanned/m);
    // Why a blob is missing: a blob pushed to b that no manifest links, collected by a forced run.
    const gone = Buffer.from(`why-${SEED}`);
    const goneDigest = sha256(gone);
    const why = new OciClient(mesh.regions.get("b")!.registry);
    const pushed = await why.pushBlob("why/app", gone);
    assert.equal(pushed.digest, goneDigest);
    const forced = await runCli(["gc", "run", "--region", "b", "--now", "--data", mesh.dataDir]);
    assert.equal(forced.code, 0, forced.stderr);
    const explained = await runCli(["gc", "why", goneDigest, "--region", "b", "--data", mesh.dataDir]);
    assert.equal(explained.code, 0, explained.stderr);
    assert.match(
      explained.stdout,
      new RegExp(
        `^${goneDigest}: collected in region b by gc-\\S+ at \\S+ \\(.+\\): \\w+, ${gone.length} bytes; links dropped: why/app$`,
        "m",
      ),
    );
    // Still intact after the forced run.
    const c = client("b");
    for (const [key, image] of expected) {
      for (const blob of image.blobs) {
        const b = await c.fetch(`/v2/${image.repo}/blobs/${blob.digest}`);
        assert.equal(b.status, 200, `b ${key} blob ${blob.digest} after gc --now`);
      }
    }
  });
});
