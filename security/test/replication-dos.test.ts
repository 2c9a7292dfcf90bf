/**
 * Issue 10, finding 4: one push could stall replication for months. Indexes
 * sharing children (2·D+3 manifests, 2^(D+1) paths) made the worker's
 * closure walk exponential, holding the source's stream (a→c) behind it, and
 * a redelivery replayed the walk. Against `meridian up --auth` with three
 * regions (default worker limits): the D=20 chain is pushed to a, then an
 * ordinary image; the image reaches c within a bound, the parts of the chain
 * within the depth limit replicate, the rest is recorded as failed once per
 * region with its reason, visible in `meridian replication status`. And an
 * event whose content cannot be copied (the source's peer unreachable, its
 * log reachable) is given up on at its deadline, recorded, and the stream
 * goes on.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { writeTokenKey } from "../../mesh-client/token-key-file.js";
import { diamond } from "../../replication/test/diamond.js";
import { cleanupStack, eventually, runCli, tempDir } from "../../testing/harness.js";
import { type RunningMesh, startMesh, startProxiedMesh } from "../../testing/mesh.js";
import { OCI_INDEX, OciClient } from "../../testing/oci-client.js";

const cleanup = cleanupStack({ after });
const DEPTH = 20;
const REPO = "bomb/diamond";
let mesh: RunningMesh;
let admin: string;
const client = (region: string) => new OciClient(mesh.regions.get(region)!.registry, admin);
const cli = (args: string[]) => runCli([...args, "--data", mesh.dataDir], 60_000);

async function present(region: string, repo: string, ref: string, accept = OCI_INDEX): Promise<boolean> {
  const res = await client(region).fetch(`/v2/${repo}/manifests/${ref}`, {
    method: "HEAD",
    headers: {
      accept: `${accept}, application/vnd.oci.image.manifest.v1+json`,
      "cache-control": "only-if-cached",
    },
  });
  return res.status === 200;
}

describe("a closure bomb", () => {
  before(async () => {
    mesh = await startMesh(cleanup, ["a", "b", "c"], undefined, ["--auth"]);
    const password = readFileSync(mesh.adminPasswordFile!, "utf8").trim();
    admin = `Basic ${Buffer.from(`admin:${password}`).toString("base64")}`;
  });

  test("a deep chain of shared-children indexes does not hold back the images pushed after it", async () => {
    const chain = diamond(DEPTH, "replication-dos");
    const a = client("a");
    for (const blob of chain.blobs) await a.pushBlob(REPO, blob.bytes, blob.mediaType);
    for (const m of chain.manifests.slice(0, -1))
      await a.pushManifest(REPO, m.digest, m.bytes.toString(), m.mediaType);
    await a.pushManifest(REPO, "bomb", chain.top.bytes.toString(), OCI_INDEX);
    const image = await a.pushRandomImage("plain/app", "v1");

    // Before the fix the walk of the chain took days (doubling per level) and c never saw this.
    await eventually(() => present("c", "plain/app", "v1"), 60_000, 200);
    await eventually(() => present("b", "plain/app", "v1"), 60_000, 200);
    assert.ok(await present("c", "plain/app", image.digest));

    // Levels within the default depth limit (16) replicated, each walked once.
    const level16 = chain.manifests[2 * 16]!;
    assert.match(level16.bytes.toString(), /"test.meridian\/level":"16"/);
    await eventually(() => present("c", REPO, level16.digest), 30_000, 200);

    // The top is over the limit: recorded as failed, with the reason, in every other region.
    const status = async () =>
      JSON.parse((await cli(["replication", "status", `${REPO}@${chain.top.digest}`, "--json"])).stdout) as {
        regions: Array<{ region: string; state: string; detail: string }>;
      };
    await eventually(
      async () => (await status()).regions.filter((r) => r.state === "failed").length === 2,
      30_000,
      250,
    );
    const regions = new Map((await status()).regions.map((r) => [r.region, r]));
    assert.equal(regions.get("a")!.state, "present");
    for (const r of ["b", "c"]) {
      assert.equal(regions.get(r)!.state, "failed", r);
      assert.match(regions.get(r)!.detail, /nests indexes more than 16 deep/, r);
    }
    assert.equal(await present("c", REPO, "bomb"), false);

    // Recorded once per event and region (a redelivery is terminated, not walked and recorded again).
    // (The alerts b's and c's workers raised replicate to the region asked: wait for both.)
    const destinations = async () => {
      const { stdout } = await cli(["alerts", "--json"]);
      const alerts = (
        JSON.parse(stdout) as { alerts: Array<{ kind: string; detail?: Record<string, unknown> }> }
      ).alerts.filter((x) => x.kind === "replication-failed" && x.detail?.digest === chain.top.digest);
      return alerts.map((x) => String(x.detail?.destination)).sort();
    };
    await eventually(async () => (await destinations()).length >= 2, 30_000, 250);
    assert.deepEqual(await destinations(), ["b", "c"]);

    // The stream goes on: a later push still arrives.
    await a.pushRandomImage("plain/app", "v2");
    await eventually(() => present("c", "plain/app", "v2"), 30_000, 200);
  });
});

describe("an event past its deadline", () => {
  test("is recorded as failed and the stream moves on", async () => {
    const dir = tempDir(cleanup, "meridian-auth-");
    const keyFile = join(dir, "token-key.pem");
    await writeTokenKey(keyFile);
    const password = randomBytes(18).toString("base64url");
    const passwordFile = join(dir, "admin-password");
    writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
    const basic = `Basic ${Buffer.from(`admin:${password}`).toString("base64")}`;
    const pmesh = await startProxiedMesh(cleanup, ["a", "c"], {
      node: {
        MERIDIAN_AUTH: "true",
        MERIDIAN_TOKEN_KEY_FILE: keyFile,
        MERIDIAN_ADMIN_PASSWORD_FILE: passwordFile,
      },
      peer: { MERIDIAN_TOKEN_KEY_FILE: keyFile },
      worker: { MERIDIAN_REPLICATION_EVENT_DEADLINE_MS: "4000" },
    });
    const a = new OciClient(pmesh.regions.get("a")!.registry, basic);
    const c = new OciClient(pmesh.regions.get("c")!.registry, basic);
    // c's worker reads a's log but a's peer does not answer: no content can be copied.
    // (Blackholed rather than reset: the link resumes at heal() without a reconnect backoff.)
    const link = pmesh.proxies.get("c")!.get("a")!;
    link.grpc.blackhole();
    const stuck = await a.pushRandomImage("late/app", "v1");
    const failed = async () => {
      const res = await c.fetch("/admin/v1/alerts");
      if (res.status !== 200) return undefined;
      const { alerts } = (await res.json()) as {
        alerts: Array<{ kind: string; repo?: string; detail?: Record<string, unknown> }>;
      };
      return alerts.filter(
        (x) =>
          x.kind === "replication-failed" &&
          x.detail?.digest === stuck.digest &&
          x.detail?.destination === "c",
      );
    };
    // Before the fix the event was retried for as long as the peer stayed unreachable.
    await eventually(async () => ((await failed()) ?? []).length > 0, 30_000, 200);
    const [alert] = (await failed())!;
    assert.equal(alert!.repo, "late/app");
    assert.match(String(alert!.detail?.reason), /content not copied within 4000 ms/);
    link.grpc.heal();
    const next = await a.pushRandomImage("late/app", "v2");
    await eventually(
      async () =>
        (
          await c.fetch("/v2/late/app/manifests/v2", {
            method: "HEAD",
            headers: { "cache-control": "only-if-cached" },
          })
        ).status === 200,
      30_000,
      200,
    );
    assert.equal(
      (
        await c.fetch(`/v2/late/app/manifests/${next.digest}`, {
          method: "HEAD",
          headers: { "cache-control": "only-if-cached" },
        })
      ).status,
      200,
    );
    // Given up on, not retried: recorded once.
    assert.equal((await failed())!.length, 1);
  });
});
