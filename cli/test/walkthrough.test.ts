/**
 * The README's "Hybrid promotion" walkthrough, run as written: the fenced
 * block after `<!-- walkthrough:hybrid-promotion -->` is extracted and run
 * by bash (errexit, pipefail) against a real Distribution playing the
 * on-prem registry and a real two-region mesh (`onprem`, `cloud`) with
 * authentication, through `meridian` (bin/ on PATH) and skopeo. The only
 * inputs are the variables the block names (ONPREM, MERIDIAN, ONPREM_REGION,
 * CLOUD_REGION, WORK). Before it, the test plays the CI: it pushes an image
 * to Distribution with skopeo and its cosign signature (made here with a
 * generated key, in cosign's format) as the `sha256-<hex>.sig` tag.
 *
 * Asserts: the block exits 0; it promoted the on-prem image's digest; the
 * image it pulled from the cloud region is that digest (skopeo pulled by
 * it), and the cloud region's prod/app:1.0 resolves to it; the source tag's
 * history lists the passed promotion; and the same block run on an image
 * signed with another key stops at `meridian promote`, naming the signature
 * gate.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { OciRegistryClient } from "../../mesh-client/oci-registry-client.js";
import { digestOf } from "../../protocol/digest.js";
import { cosignSign, generateCosignKey } from "../../testing/cosign.js";
import { startDistribution } from "../../testing/distribution.js";
import { waitWritable } from "../../testing/faults.js";
import { cleanupStack, REPO_ROOT, tempDir } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";
import { OCI_MANIFEST, sha256 } from "../../testing/oci-client.js";
import { writeImageLayout } from "../../testing/oci-layout.js";

const run = promisify(execFile);
const cleanup = cleanupStack({ after });
const MARK = "<!-- walkthrough:hybrid-promotion -->";
let mesh: RunningMesh;
let onprem: string;
let key: ReturnType<typeof generateCosignKey>;
let dir: string;

const host = (u: string) => u.replace(/^https?:\/\//, "");

/** The commands of the README's marked block, exactly. */
function walkthrough(): string {
  const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
  const at = readme.indexOf(MARK);
  assert.ok(at >= 0, `README.md has ${MARK}`);
  const m = /^```sh\n([\s\S]*?)^```$/m.exec(readme.slice(at + MARK.length));
  assert.ok(m !== null, "a ```sh block follows the mark");
  return m[1]!;
}

/** What CI did on-prem: the image (by skopeo) and its cosign signature tag, made with `signer`. */
async function pushOnPrem(repo: string, signer: ReturnType<typeof generateCosignKey>): Promise<string> {
  const layout = join(dir, `layout-${repo.replace("/", "-")}`);
  const digest = writeImageLayout(layout, "1.0", [150_000, 40_000]);
  await run("skopeo", [
    "copy",
    "--dest-tls-verify=false",
    `oci:${layout}:1.0`,
    `docker://${host(onprem)}/${repo}:1.0`,
  ]);
  const sig = cosignSign(signer.privateKey, `${host(onprem)}/${repo}`, digest);
  const client = new OciRegistryClient({ url: onprem, deadlineMs: 10_000 });
  for (const blob of [sig.payload, sig.config])
    await client.pushBlob(repo, { digest: sha256(blob), size: blob.length }, async () => blob);
  await client.putManifest(repo, `${digest.replace(":", "-")}.sig`, {
    bytes: sig.tagManifest,
    mediaType: OCI_MANIFEST,
    digest: digestOf(sig.tagManifest),
  });
  return digest;
}

/** Run the block with the variables it names, in `work`. */
async function runBlock(work: string, block: string) {
  try {
    const r = await run("bash", ["-e", "-o", "pipefail", "-c", block], {
      cwd: work,
      timeout: 240_000,
      env: {
        ...process.env,
        PATH: `${join(REPO_ROOT, "bin")}:${process.env.PATH}`,
        ONPREM: host(onprem),
        MERIDIAN: mesh.dataDir,
        ONPREM_REGION: host(mesh.regions.get("onprem")!.registry),
        CLOUD_REGION: host(mesh.regions.get("cloud")!.registry),
        WORK: work,
      },
    });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
  }
}

before(async () => {
  dir = tempDir(cleanup, "walkthrough-");
  key = generateCosignKey();
  writeFileSync(join(dir, "cosign.pub"), key.publicPem);
  onprem = (await startDistribution(cleanup)).url;
  mesh = await startMesh(cleanup, ["onprem", "cloud"], undefined, ["--auth"], {
    MERIDIAN_VERIFICATION_KEYS: `release=${join(dir, "cosign.pub")}`,
  });
  for (const r of mesh.regions.values()) await waitWritable(r.registry);
});

test("the README's hybrid promotion walkthrough runs as written and promotes the signed image to the cloud region", async () => {
  const digest = await pushOnPrem("team/app", key);
  const work = tempDir(cleanup, "walkthrough-work-");
  const r = await runBlock(work, walkthrough());
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(
    r.stdout,
    new RegExp(`promoted team/app:1\\.0@${digest} from onprem to region cloud prod/app:1\\.0`),
  );
  assert.match(r.stdout, /ok \[destination:cloud\] signature: verified with key release/);
  assert.match(r.stdout, /promotion pr-[0-9a-f]{24} passed .* by admin: onprem\/team\/app:1\.0/);
  // skopeo pulled by the digest (and checked it); the cloud region's tag is that digest.
  const pulled = JSON.parse(readFileSync(join(work, "app", "index.json"), "utf8"));
  assert.equal(pulled.manifests.length, 1);
  const creds = `admin:${readFileSync(mesh.adminPasswordFile!, "utf8").trim()}`;
  const raw = await run("skopeo", [
    "inspect",
    "--raw",
    "--tls-verify=false",
    "--creds",
    creds,
    `docker://${host(mesh.regions.get("cloud")!.registry)}/prod/app:1.0`,
  ]);
  assert.equal(sha256(Buffer.from(raw.stdout)), digest);
});

test("the same commands on an image signed with another key stop at the promotion, naming the signature gate", async () => {
  await pushOnPrem("team/other", generateCosignKey());
  const work = tempDir(cleanup, "walkthrough-other-");
  const block = walkthrough().replaceAll("team/app", "team/other").replaceAll("prod/app", "prod/other");
  const r = await runBlock(work, block);
  assert.notEqual(r.code, 0, r.stdout);
  assert.match(r.stderr, /meridian promote: promotion refused by 1 gate\(s\)/);
  assert.match(r.stderr, /\[destination:cloud\] signature: .*does not verify with key release/);
  assert.doesNotMatch(r.stdout, /promoted team\/other/);
});
