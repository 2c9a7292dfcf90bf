/**
 * Issue 11, finding 4: one policy used to stop all other replication on its
 * link, silently. Against a real two-region mesh (`meridian up --regions a,c`)
 * with the periodic anti-entropy set to an hour, so only the catch-up on a
 * policy change can bring what a policy held back:
 *   - the README's `prod/**` policy a→c leaves the default mirror on:
 *     `team/app` still reaches c, and `policy apply` says so;
 *   - the same policy with `exclusive: true` stops everything else on a→c:
 *     `policy apply` and `policy plan` say so, and `team/app` stays in a;
 *   - deleting the exclusive policy brings `team/app` to c at once (well
 *     before the hour).
 * The steps run in order on one mesh.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { sleep, waitWritable } from "../../testing/faults.js";
import { cleanupStack, eventually, runCli } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";
import { OCI_MANIFEST, OciClient } from "../../testing/oci-client.js";

const cleanup = cleanupStack({ after });
let mesh: RunningMesh;
const client = (region: string) => new OciClient(mesh.regions.get(region)!.registry);

const meridian = (args: string[]) => runCli([...args, "--data", mesh.dataDir]);

async function succeeds(args: string[]): Promise<string> {
  const r = await meridian(args);
  assert.equal(r.code, 0, `meridian ${args.join(" ")}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

async function digestIn(region: string, repo: string, tag: string): Promise<string | undefined> {
  const res = await client(region).fetch(`/v2/${repo}/manifests/${tag}`, {
    method: "HEAD",
    // What c itself holds, not what it could fetch on miss from a.
    headers: { accept: OCI_MANIFEST, "cache-control": "only-if-cached" },
  });
  return res.status === 200 ? (res.headers.get("docker-content-digest") ?? undefined) : undefined;
}

async function arrives(region: string, repo: string, tag: string, digest: string, ms: number): Promise<void> {
  await eventually(async () => (await digestIn(region, repo, tag)) === digest, ms, 100);
}

/** The README's example policy, optionally exclusive. */
function prodPolicy(exclusive?: boolean): string {
  const file = join(mesh.dataDir, `prod-${String(exclusive)}.yaml`);
  writeFileSync(
    file,
    `name: prod\nsource: a\ndestination: c\nrepositories: ["prod/**"]\n${
      exclusive === undefined ? "" : `exclusive: ${exclusive}\n`
    }`,
  );
  return file;
}

/** Wait until region c's node lists policy prod with `exclusive` as given, then a moment for c's worker's view. */
async function settled(exclusive: boolean | undefined): Promise<void> {
  await eventually(
    async () => {
      const res = await client("c").fetch("/admin/v1/policies");
      const { policies } = (await res.json()) as {
        policies: Array<{ name: string; policy: { exclusive?: boolean } }>;
      };
      const prod = policies.find((p) => p.name === "prod");
      return exclusive === undefined ? prod === undefined : prod?.policy.exclusive === exclusive;
    },
    15_000,
    100,
  );
  await sleep(1_000);
}

describe("a policy stops other replication on its link only when it says exclusive", () => {
  let held = "";

  before(async () => {
    // The periodic anti-entropy an hour away: catch-ups must come from the policy change itself.
    process.env.MERIDIAN_ANTI_ENTROPY_INTERVAL_MS = "3600000";
    try {
      mesh = await startMesh(cleanup, ["a", "c"]);
    } finally {
      delete process.env.MERIDIAN_ANTI_ENTROPY_INTERVAL_MS;
    }
    for (const r of mesh.regions.values()) await waitWritable(r.registry);
  });

  test("the README's prod/** policy (not exclusive): team/app still reaches c, and apply says the mirror stays", async () => {
    const out = await succeeds(["policy", "apply", prodPolicy()]);
    assert.match(out, /^applied policy prod$/m);
    assert.match(out, /^a→c: the full mirror stays/m);
    await settled(false);
    const a = client("a");
    const app = await a.pushRandomImage("team/app", "v1");
    const prod = await a.pushRandomImage("prod/api", "v1");
    await arrives("c", "prod/api", "v1", prod.digest, 30_000);
    await arrives("c", "team/app", "v1", app.digest, 30_000);
  });

  test("exclusive: true stops everything else on a→c, and apply and plan say so", async () => {
    const out = await succeeds(["policy", "apply", prodPolicy(true)]);
    assert.match(
      out,
      /^a→c: replication of everything else stops \(exclusive: prod\); only prod \(prod\/\*\*\) replicates$/m,
    );
    await settled(true);
    const a = client("a");
    held = (await a.pushRandomImage("team/app", "v2")).digest;
    const prod = await a.pushRandomImage("prod/api", "v2");
    // prod/api:v2 was pushed after team/app:v2 on the same stream: once it is in c, team/app:v2 was judged.
    await arrives("c", "prod/api", "v2", prod.digest, 30_000);
    await sleep(500);
    assert.equal(await digestIn("c", "team/app", "v2"), undefined, "an exclusive policy holds team/app back");

    const plan = await succeeds(["policy", "plan", "prod"]);
    assert.match(plan, /^a→c: replication of everything else stops \(exclusive: prod\)/m);
    assert.match(plan, /^ {2}not replicated on this link: team\/app$/m);
    const json = JSON.parse(await succeeds(["policy", "plan", "prod", "--json"])) as {
      links: Array<{ stopped: string[]; effect: string }>;
    };
    assert.deepEqual(json.links[0]!.stopped, ["team/app"]);
  });

  test("deleting the exclusive policy brings team/app to c at once, not at the next anti-entropy", async () => {
    const out = await succeeds(["policy", "delete", "prod"]);
    assert.match(out, /^a→c: the full mirror stays/m);
    // The periodic run is an hour away; only the catch-up on the deletion can bring it.
    await arrives("c", "team/app", "v2", held, 30_000);
  });
});
