/**
 * `meridian import` (issue 17, item 4) from a real CNCF Distribution with
 * htpasswd auth into a real region with authentication: refusals of bad
 * flags, an unknown and an unreachable endpoint; a dry run that writes
 * nothing; a filtered import (--repos, --tags with an exclude, --to-prefix);
 * the full import of images (one pushed by skopeo from an OCI layout), a Helm
 * chart built the way `helm push` builds it, an artifact with artifactType
 * and an empty config and a two-platform index, each served back by Meridian
 * byte-identical by digest (and by skopeo inspect --raw), with the skipped
 * (tag excluded, blob unknown upstream, quota exceeded, an immutable tag
 * denied) and failed (a blob
 * corrupted upstream) tags reported with reasons and exit 1; a second run
 * that finds everything done; and a run interrupted by SIGINT that writes
 * its checkpoint and is resumed, re-copying a tag that moved upstream.
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { OciRegistryClient } from "../../mesh-client/oci-registry-client.js";
import { digestOf } from "../../protocol/digest.js";
import { type Distribution, startDistribution } from "../../testing/distribution.js";
import { waitWritable } from "../../testing/faults.js";
import { CLI_ENTRY, cleanupStack, freePort, runCli, tempDir } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";
import { writeImageLayout } from "../../testing/oci-layout.js";
import { startTokenDistribution } from "../../testing/token-distribution.js";

const run = promisify(execFile);
const cleanup = cleanupStack({ after });
let mesh: RunningMesh;
let dist: Distribution;
let upstream: OciRegistryClient;
let regionA: OciRegistryClient;
let work: string;
let adminPassword: string;

const SECRET = "dist-import-pw";
const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip";
const HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json";
const HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
const HELM_PROV = "application/vnd.cncf.helm.chart.provenance.v1.prov";
const EMPTY = "application/vnd.oci.empty.v1+json";

const meridian = (args: string[], timeoutMs = 120_000) =>
  runCli([...args, "--data", mesh.dataDir], timeoutMs);

interface Pushed {
  digest: string;
  bytes: Buffer;
  blobs: Buffer[];
}

/** Push blobs and a manifest naming them (`fields` beside config and layers) into the Distribution. */
async function push(
  repo: string,
  tag: string,
  config: { mediaType: string; bytes: Buffer },
  layers: Array<{ mediaType: string; bytes: Buffer }>,
  fields: Record<string, unknown> = {},
  to = upstream,
): Promise<Pushed> {
  const blobs = [config.bytes, ...layers.map((l) => l.bytes)];
  for (const b of blobs) await to.pushBlob(repo, { digest: digestOf(b), size: b.length }, async () => b);
  const d = (x: { mediaType: string; bytes: Buffer }) => ({
    mediaType: x.mediaType,
    digest: digestOf(x.bytes),
    size: x.bytes.length,
  });
  const bytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      ...fields,
      config: d(config),
      layers: layers.map(d),
    }),
  );
  await to.putManifest(repo, tag, { bytes, mediaType: OCI_MANIFEST, digest: digestOf(bytes) });
  return { digest: digestOf(bytes), bytes, blobs };
}

function image(repo: string, tag: string, layerBytes: number[] = [3000], to = upstream): Promise<Pushed> {
  const config = Buffer.from(JSON.stringify({ os: "linux", architecture: "amd64", tag }));
  const layers = layerBytes.map((n) => ({ mediaType: OCI_LAYER, bytes: gzipSync(randomBytes(n)) }));
  return push(repo, tag, { mediaType: OCI_CONFIG, bytes: config }, layers, {}, to);
}

/** Distribution's file of a blob (docker/registry/v2/blobs/sha256/ab/<hex>/data). */
function blobFile(digest: string): string {
  const hex = digest.slice(7);
  return join(dist.root, "docker", "registry", "v2", "blobs", "sha256", hex.slice(0, 2), hex, "data");
}

interface Report {
  repositories: number;
  copied: Array<{ repo: string; tag: string; destination: string; digest: string }>;
  present: Array<{ repo: string; tag: string; digest: string }>;
  resumed: Array<{ repo: string; tag: string; digest: string }>;
  skipped: Array<{ repo: string; tag: string; reason: string }>;
  failed: Array<{ repo: string; tag: string; reason: string }>;
  wouldCopy: Array<{ repo: string; tag: string }>;
  interrupted: boolean;
}
const tagsOf = (list: Array<{ repo: string; tag: string }>) => list.map((t) => `${t.repo}:${t.tag}`).sort();
const reasonOf = (r: Report, repoTag: string) =>
  [...r.skipped, ...r.failed].find((t) => `${t.repo}:${t.tag}` === repoTag)?.reason;

const content: Record<string, Pushed> = {};

before(async () => {
  dist = await startDistribution(cleanup, { user: "ci", password: SECRET });
  mesh = await startMesh(cleanup, ["a"], undefined, ["--auth"]);
  adminPassword = readFileSync(mesh.adminPasswordFile!, "utf8").trim();
  await waitWritable(mesh.regions.get("a")!.registry);
  work = tempDir(cleanup, "meridian-import-");
  upstream = new OciRegistryClient({ url: dist.url, credentials: { username: "ci", password: SECRET } });
  regionA = new OciRegistryClient({
    url: mesh.regions.get("a")!.registry,
    credentials: { username: "admin", password: adminPassword },
  });
  const creds = join(work, "onprem.creds");
  writeFileSync(creds, `ci:${SECRET}\n`, { mode: 0o600 });
  const add = await meridian(["endpoint", "add", "onprem", "--url", dist.url, "--credentials-file", creds]);
  assert.equal(add.code, 0, add.stderr);

  // An image as a user's skopeo puts it there, from an OCI layout.
  const layout = join(work, "layout");
  const layoutDigest = writeImageLayout(layout, "1.0");
  await run("skopeo", [
    "copy",
    "--dest-tls-verify=false",
    "--dest-creds",
    `ci:${SECRET}`,
    `oci:${layout}:1.0`,
    `docker://${dist.host}/corp/app:1.0`,
  ]);
  content["corp/app:1.0"] = {
    digest: layoutDigest,
    bytes: readFileSync(join(layout, "blobs", "sha256", layoutDigest.slice(7))),
    blobs: [],
  };
  content["corp/app:1.1"] = await image("corp/app", "1.1");
  content["corp/app:dev"] = await image("corp/app", "dev");

  // A Helm chart as `helm push` writes it: the chart's Chart.yaml as JSON config, the .tgz, the .prov.
  content["charts/mychart:0.1.0"] = await push(
    "charts/mychart",
    "0.1.0",
    {
      mediaType: HELM_CONFIG,
      bytes: Buffer.from(
        '{"name":"mychart","version":"0.1.0","description":"A Helm chart","apiVersion":"v2","appVersion":"1.16.0","type":"application"}',
      ),
    },
    [
      {
        mediaType: HELM_CHART,
        bytes: gzipSync(Buffer.concat([Buffer.from("mychart/Chart.yaml\0"), randomBytes(2048)])),
      },
      {
        mediaType: HELM_PROV,
        bytes: Buffer.from("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nname: mychart\n"),
      },
    ],
    {
      annotations: {
        "org.opencontainers.image.created": "2026-12-05T21:00:00Z",
        "org.opencontainers.image.title": "mychart",
        "org.opencontainers.image.version": "0.1.0",
      },
    },
  );
  // An artifact: artifactType, the empty config, a non-image layer.
  content["art/sbom:1"] = await push(
    "art/sbom",
    "1",
    { mediaType: EMPTY, bytes: Buffer.from("{}") },
    [{ mediaType: "application/spdx+json", bytes: Buffer.from('{"spdxVersion":"SPDX-2.3","name":"app"}') }],
    { artifactType: "application/spdx+json" },
  );
  // An index of two platforms.
  const amd = await image("multi/app", "amd64-only");
  const arm = await push(
    "multi/app",
    "arm64-only",
    { mediaType: OCI_CONFIG, bytes: Buffer.from('{"os":"linux","architecture":"arm64"}') },
    [{ mediaType: OCI_LAYER, bytes: gzipSync(randomBytes(2000)) }],
  );
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [
        {
          mediaType: OCI_MANIFEST,
          digest: amd.digest,
          size: amd.bytes.length,
          platform: { os: "linux", architecture: "amd64" },
        },
        {
          mediaType: OCI_MANIFEST,
          digest: arm.digest,
          size: arm.bytes.length,
          platform: { os: "linux", architecture: "arm64" },
        },
      ],
    }),
  );
  await upstream.putManifest("multi/app", "1", {
    bytes: index,
    mediaType: OCI_INDEX,
    digest: digestOf(index),
  });
  content["multi/app:1"] = { digest: digestOf(index), bytes: index, blobs: [] };

  // Trouble: a blob gone upstream, a blob whose bytes are not its digest, a project over quota.
  const broken = await image("broken/app", "1");
  const lost = await fetch(`${dist.url}/v2/broken/app/blobs/${digestOf(broken.blobs[1]!)}`, {
    method: "DELETE",
    headers: { authorization: `Basic ${Buffer.from(`ci:${SECRET}`).toString("base64")}` },
  });
  assert.equal(lost.status, 202);
  const corrupt = await image("corrupt/app", "1");
  const layer = digestOf(corrupt.blobs[1]!);
  writeFileSync(blobFile(layer), randomBytes(corrupt.blobs[1]!.length));
  await image("big/app", "1", [20_000]);
  const quota = await meridian(["quota", "set", "big", "1KB"]);
  assert.equal(quota.code, 0, quota.stderr);
});

describe("meridian import", () => {
  test("refusals: bad flags (2), an unknown or unreachable endpoint (1)", async () => {
    for (const args of [
      ["import"],
      ["import", "--from", "onprem", "--concurrency", "0"],
      ["import", "--from", "onprem", "--tags", "regex:("],
      ["import", "--from", "onprem", "--repos", "a{"],
      ["import", "--from", "onprem", "--to-prefix", "Bad Prefix"],
      ["import", "--from", "onprem", "--bogus"],
      ["import", "extra", "--from", "onprem"],
    ]) {
      const r = await meridian(args);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, /see 'meridian help import'/);
    }
    const unknown = await meridian(["import", "--from", "nowhere"]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /endpoint nowhere not found; 'meridian endpoint list' shows them/);
    const port = await freePort();
    assert.equal((await meridian(["endpoint", "add", "gone", "--url", `http://127.0.0.1:${port}`])).code, 0);
    const gone = await meridian(["import", "--from", "gone"]);
    assert.equal(gone.code, 1);
    assert.match(
      gone.stderr,
      /endpoint gone \(http:\/\/127\.0\.0\.1:\d+\) does not answer: .*'meridian endpoint check gone'/,
    );
  });

  test("a dry run plans and writes nothing", async () => {
    const cp = join(work, "dry.json");
    const r = await meridian(["import", "--from", "onprem", "--dry-run", "--json", "--checkpoint", cp]);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as Report;
    assert.ok(tagsOf(report.wouldCopy).includes("charts/mychart:0.1.0"));
    assert.ok(tagsOf(report.wouldCopy).includes("corp/app:dev"));
    assert.deepEqual(report.copied, []);
    assert.equal(await regionA.headManifest("corp/app", "dev"), undefined);
    assert.throws(() => readFileSync(cp), /ENOENT/);
  });

  test("a filtered import: --repos, --tags with an exclude, --to-prefix", async () => {
    const r = await meridian([
      "import",
      "--from",
      "onprem",
      "--repos",
      "corp/*",
      "--tags",
      "1.*",
      "--tags",
      "!1.1",
      "--to-prefix",
      "mirror",
      "--checkpoint",
      join(work, "filtered.json"),
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as Report;
    assert.equal(report.repositories, 1);
    assert.deepEqual(tagsOf(report.copied), ["corp/app:1.0"]);
    assert.equal(report.copied[0]!.destination, "mirror/corp/app");
    assert.equal(reasonOf(report, "corp/app:1.1"), "tag excluded by --tags");
    assert.equal(reasonOf(report, "corp/app:dev"), "tag excluded by --tags");
    assert.equal(
      (await regionA.headManifest("mirror/corp/app", "1.0"))?.digest,
      content["corp/app:1.0"]!.digest,
    );
    assert.equal(await regionA.headManifest("mirror/corp/app", "dev"), undefined);
    assert.equal(await regionA.headManifest("charts/mychart", "0.1.0"), undefined);
    assert.match(r.stderr, /copied corp\/app:1\.0 sha256:/);
  });

  test("the full import: images, a Helm chart, an artifact, an index, byte-identical; skips and failures with reasons", async () => {
    // A tag Meridian holds at another digest under an immutable-tag rule: denied, with the reason.
    const held = await image("corp/app", "1.1", [100], regionA);
    assert.equal(
      (await meridian(["immutable", "add", "frozen", "--repos", "corp/app", "--tags", "1.1"])).code,
      0,
    );
    const cp = join(work, "full.json");
    const r = await meridian(["import", "--from", "onprem", "--checkpoint", cp]);
    assert.equal(r.code, 1, `a failed tag: exit 1\n${r.stdout}${r.stderr}`);
    assert.match(
      r.stdout,
      /^import from onprem into region a: 7 repositories; 7 copied, 0 already present, 3 skipped, 1 failed;/,
    );
    assert.match(r.stdout, /^skipped:\n(?:.*\n)*? {2}big\/app:1 {2}quota exceeded: /m);
    assert.match(r.stdout, /^ {2}broken\/app:1 {2}blob unknown upstream$/m);
    assert.match(r.stdout, /^ {2}corp\/app:1\.1 {2}denied by Meridian: .*immutable/im);
    assert.match(r.stdout, /^failed:\n {2}corrupt\/app:1 {2}digest mismatch: /m);
    assert.equal(
      (await regionA.headManifest("corp/app", "1.1"))?.digest,
      held.digest,
      "the immutable tag stays",
    );
    for (const [ref, pushed] of Object.entries(content)) {
      if (ref === "corp/app:1.1") continue;
      const [repo, tag] = ref.split(":") as [string, string];
      const got = await regionA.getManifest(repo, pushed.digest);
      assert.ok(got !== undefined, ref);
      assert.ok(got.bytes.equals(pushed.bytes), `${ref}: the same bytes by digest`);
      assert.equal((await regionA.headManifest(repo, tag))?.digest, pushed.digest, `${ref}: the tag`);
      for (const b of pushed.blobs) {
        const blob = await regionA.getBlob(repo, digestOf(b));
        const chunks: Buffer[] = [];
        for await (const c of blob.stream) chunks.push(c as Buffer);
        assert.ok(Buffer.concat(chunks).equals(b), `${ref}: blob ${digestOf(b)}`);
      }
    }
    // What a user's client sees: skopeo's raw manifest is the upstream's bytes.
    for (const ref of ["charts/mychart:0.1.0", "art/sbom:1", "multi/app:1"]) {
      const raw = await run(
        "skopeo",
        [
          "inspect",
          "--raw",
          "--tls-verify=false",
          "--creds",
          `admin:${adminPassword}`,
          `docker://${mesh.regions.get("a")!.registry.replace(/^https?:\/\//, "")}/${ref}`,
        ],
        { encoding: "buffer" },
      );
      assert.ok(Buffer.from(raw.stdout).equals(content[ref]!.bytes), `skopeo inspect --raw ${ref}`);
    }
    const child = await regionA.getManifest(
      "multi/app",
      JSON.parse(content["multi/app:1"]!.bytes.toString()).manifests[1].digest,
    );
    assert.ok(child !== undefined, "an index's children come along");
    const checkpoint = JSON.parse(readFileSync(cp, "utf8")) as { done: Record<string, string> };
    assert.equal(checkpoint.done["charts/mychart:0.1.0"], content["charts/mychart:0.1.0"]!.digest);
    assert.equal(checkpoint.done["corrupt/app:1"], undefined, "a failed tag is not done");

    // Again with the checkpoint: nothing copied; with a new one: found present, nothing sent.
    const again = await meridian(["import", "--from", "onprem", "--checkpoint", cp, "--json"]);
    const a = JSON.parse(again.stdout) as Report;
    assert.deepEqual(a.copied, []);
    assert.equal(a.resumed.length, 7);
    const fresh = await meridian([
      "import",
      "--from",
      "onprem",
      "--checkpoint",
      join(work, "fresh.json"),
      "--json",
    ]);
    const f = JSON.parse(fresh.stdout) as Report;
    assert.deepEqual(f.copied, []);
    assert.equal(f.present.length, 7);
    assert.equal(fresh.code, 1, "the corrupt blob still fails");
  });

  test("interrupted by SIGINT, resumed from its checkpoint; a tag moved upstream is copied again", async () => {
    const n = 6;
    for (let i = 0; i < n; i++)
      content[`bulk/img-${i}:1`] = await image(`bulk/img-${i}`, "1", [1_500_000, 1_500_000]);
    const cp = join(work, "bulk.json");
    const args = [
      CLI_ENTRY,
      "import",
      "--from",
      "onprem",
      "--repos",
      "bulk/**",
      "--concurrency",
      "1",
      "--checkpoint",
      cp,
      "--data",
      mesh.dataDir,
    ];
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    const killer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    let stderr = "";
    let stdout = "";
    child.stdout!.on("data", (d) => {
      stdout += d;
    });
    child.stderr!.on("data", (d) => {
      if (!/copied bulk\//.test(stderr) && /copied bulk\//.test(stderr + d)) child.kill("SIGINT");
      stderr += d;
    });
    const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
    clearTimeout(killer);
    assert.equal(code, 130, `${stdout}${stderr}`);
    assert.match(stderr, /interrupted: finishing the tags in flight/);
    assert.match(
      stderr,
      new RegExp(`checkpoint ${cp.replace(/[.]/g, "\\.")}; run the same command again to resume`),
    );
    assert.match(stdout, /INTERRUPTED/);
    const done = Object.keys((JSON.parse(readFileSync(cp, "utf8")) as { done: Record<string, string> }).done);
    assert.ok(done.length >= 1 && done.length < n, `some done, not all: ${done.join(" ")}`);

    // One finished tag moves upstream before the resume.
    const moved = done[0]!;
    const [movedRepo] = moved.split(":") as [string];
    content[moved] = await image(movedRepo, "1", [1000]);
    const resumed = await runCli([...args.slice(1), "--json"], 120_000);
    assert.equal(resumed.code, 0, resumed.stderr);
    const r = JSON.parse(resumed.stdout) as Report;
    assert.equal(r.resumed.length, done.length - 1);
    assert.equal(r.copied.length, n - done.length + 1);
    assert.ok(tagsOf(r.copied).includes(moved), "the moved tag is copied again");
    for (let i = 0; i < n; i++)
      assert.equal(
        (await regionA.headManifest(`bulk/img-${i}`, "1"))?.digest,
        content[`bulk/img-${i}:1`]!.digest,
      );
  });

  test("a registry that refuses its catalog (token auth without registry:catalog:*): a clear error; literal --repos go without it", async () => {
    const tok = await startTokenDistribution(cleanup, {
      user: "ci",
      password: SECRET,
      grants: (scope) => !scope.startsWith("registry:catalog:"),
    });
    const client = new OciRegistryClient({ url: tok.url, credentials: { username: "ci", password: SECRET } });
    const pushed = await image("tok/app", "v1", [3000], client);
    const creds = join(work, "tok.creds");
    writeFileSync(creds, `ci:${SECRET}\n`, { mode: 0o600 });
    const add = await meridian(["endpoint", "add", "tokreg", "--url", tok.url, "--credentials-file", creds]);
    assert.equal(add.code, 0, add.stderr);
    const cp = join(work, "tok.json");
    const refused = await meridian(["import", "--from", "tokreg", "--checkpoint", cp]);
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      /endpoint tokreg refuses its catalog \(.*401 UNAUTHORIZED.*\): name the repositories with --repos NAME \(repeatable, without glob characters\)/,
    );
    const glob = await meridian(["import", "--from", "tokreg", "--repos", "tok/*", "--checkpoint", cp]);
    assert.match(glob.stderr, /refuses its catalog/);
    const named = await meridian([
      "import",
      "--from",
      "tokreg",
      "--repos",
      "tok/app",
      "--repos",
      "nothing/here",
      "--to-prefix",
      "tok-mirror",
      "--checkpoint",
      cp,
      "--json",
    ]);
    assert.equal(named.code, 0, named.stderr);
    const r = JSON.parse(named.stdout) as Report;
    assert.deepEqual(tagsOf(r.copied), ["tok/app:v1"]);
    assert.equal(reasonOf(r, "nothing/here:*"), "no tags upstream (or repository unknown)");
    assert.equal((await regionA.headManifest("tok-mirror/tok/app", "v1"))?.digest, pushed.digest);
    const other = await meridian(["import", "--from", "tokreg", "--repos", "tok/app", "--checkpoint", cp]);
    assert.equal(other.code, 2, "a checkpoint of another import (no prefix) is refused");
    assert.match(
      other.stderr,
      /written for prefix "tok-mirror", not ""; name another with --checkpoint FILE/,
    );
  });
});
