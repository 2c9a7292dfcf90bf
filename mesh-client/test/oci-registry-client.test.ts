/**
 * The client of other OCI registries and copyClosure (issue 17, item 1),
 * against a real CNCF Distribution (docker-registry 2.8: no Referrers API, so
 * the referrers tag schema) and a real Meridian region (Referrers API):
 * an image pushed with skopeo, a multi-arch index with a signature-like
 * referrer, a Helm chart as `helm push` builds it; htpasswd auth with wrong
 * credentials; Distribution's token auth (a token service in the test signs
 * ES256 JWTs with a certificate Distribution trusts); a stalled registry
 * (no answer; a body that stops); a registry sending wrong bytes; the
 * credentials file's formats.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createPrivateKey, randomBytes, X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { createServer } from "node:net";
import { join } from "node:path";
import { after, test } from "node:test";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { SignJWT } from "jose";
import { digestOf } from "../../protocol/digest.js";
import { startDistribution } from "../../testing/distribution.js";
import { waitWritable } from "../../testing/faults.js";
import { cleanupStack, tempDir } from "../../testing/harness.js";
import { startMesh } from "../../testing/mesh.js";
import { writeImageLayout } from "../../testing/oci-layout.js";
import { copyClosure } from "../oci-copy.js";
import { CredentialsFileError, parseCredentials } from "../oci-credentials.js";
import { type ExternalRegistryError, type ManifestBytes, OciRegistryClient } from "../oci-registry-client.js";

const cleanup = cleanupStack({ after });
const exec = promisify(execFile);

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX = "application/vnd.oci.image.index.v1+json";

async function skopeoDigest(ref: string, creds?: string): Promise<string> {
  const args = [
    "inspect",
    "--raw",
    "--tls-verify=false",
    ...(creds === undefined ? [] : ["--creds", creds]),
    ref,
  ];
  const { stdout } = await exec("skopeo", args);
  return digestOf(Buffer.from(stdout));
}

/** Push blobs and a manifest with the client; its ManifestBytes. */
async function push(c: OciRegistryClient, repo: string, blobs: Buffer[], manifest: object, tag?: string) {
  for (const b of blobs) await c.pushBlob(repo, { digest: digestOf(b), size: b.length }, async () => b);
  const bytes = Buffer.from(JSON.stringify(manifest));
  const m: ManifestBytes = {
    bytes,
    mediaType: (manifest as { mediaType: string }).mediaType,
    digest: digestOf(bytes),
  };
  await c.putManifest(repo, tag ?? m.digest, m);
  return m;
}

function blobDesc(bytes: Buffer, mediaType: string) {
  return { mediaType, digest: digestOf(bytes), size: bytes.length };
}

test("copyClosure: Distribution → Meridian → Distribution, an image, a multi-arch index with a referrer, a Helm chart", async () => {
  const dist = await startDistribution(cleanup);
  const mesh = await startMesh(cleanup, ["a"]);
  const node = mesh.regions.get("a")!.registry;
  await waitWritable(node);
  const d = new OciRegistryClient({ url: dist.url });
  const m = new OciRegistryClient({ url: node });
  await d.ping();
  await m.ping();

  // An image pushed into Distribution by skopeo from an OCI layout.
  const layout = tempDir(cleanup, "meridian-layout-");
  const imageDigest = writeImageLayout(layout, "v1");
  await exec("skopeo", [
    "copy",
    "--dest-tls-verify=false",
    `oci:${layout}:v1`,
    `docker://${dist.host}/team/app:v1`,
  ]);
  const first = await copyClosure(d, m, { repository: "team/app", reference: "v1" });
  assert.equal(first.digest, imageDigest);
  assert.equal(first.blobsCopied, 3);
  assert.equal(first.manifests, 1);
  assert.equal(await skopeoDigest(`docker://${new URL(node).host}/team/app:v1`), imageDigest);
  // Again: nothing moves (HEAD says the destination has every blob).
  const again = await copyClosure(d, m, { repository: "team/app", reference: "v1" });
  assert.equal(again.blobsCopied, 0);
  assert.equal(again.blobsSkipped, 3);

  // A multi-arch index in Meridian with an artifact referring to it (Referrers API there).
  const arches = [];
  for (const arch of ["amd64", "arm64"]) {
    const config = Buffer.from(
      JSON.stringify({ architecture: arch, os: "linux", rootfs: { type: "layers", diff_ids: [] } }),
    );
    const layer = gzipSync(randomBytes(5000));
    const man = await push(m, "team/multi", [config, layer], {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: blobDesc(config, "application/vnd.oci.image.config.v1+json"),
      layers: [blobDesc(layer, "application/vnd.oci.image.layer.v1.tar+gzip")],
    });
    arches.push({
      mediaType: OCI_MANIFEST,
      digest: man.digest,
      size: man.bytes.length,
      platform: { architecture: arch, os: "linux" },
    });
  }
  const index = await push(
    m,
    "team/multi",
    [],
    { schemaVersion: 2, mediaType: OCI_INDEX, manifests: arches },
    "v2",
  );
  const empty = Buffer.from("{}");
  const sigPayload = Buffer.from(
    JSON.stringify({ critical: { image: { "docker-manifest-digest": index.digest } } }),
  );
  const sig = await push(m, "team/multi", [empty, sigPayload], {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: "application/vnd.example.signature",
    config: blobDesc(empty, "application/vnd.oci.empty.v1+json"),
    layers: [blobDesc(sigPayload, "application/vnd.dev.cosign.simplesigning.v1+json")],
    subject: { mediaType: OCI_INDEX, digest: index.digest, size: index.bytes.length },
  });
  assert.equal((await m.referrers("team/multi", index.digest)).api, true);

  // Meridian → Distribution: the index, both children, the referrer (kept there under the tag schema).
  const out = await copyClosure(
    m,
    d,
    { repository: "team/multi", reference: "v2" },
    { repository: "mirror/multi", reference: "v2" },
  );
  assert.equal(out.digest, index.digest);
  assert.equal(out.manifests, 4);
  assert.equal(out.referrers, 1);
  assert.equal(await skopeoDigest(`docker://${dist.host}/mirror/multi:v2`), index.digest);
  const there = await d.referrers("mirror/multi", index.digest);
  assert.equal(there.api, false);
  assert.deepEqual(
    there.manifests.map((r) => r.digest),
    [sig.digest],
  );
  // ... and back into another Meridian repository: the referrer found through the tag schema.
  const back = await copyClosure(
    d,
    m,
    { repository: "mirror/multi", reference: "v2" },
    { repository: "back/multi", reference: "v2" },
  );
  assert.equal(back.referrers, 1);
  assert.deepEqual(
    (await m.referrers("back/multi", index.digest)).manifests.map((r) => r.digest),
    [sig.digest],
  );
  for (const a of arches) assert.ok((await m.getManifest("back/multi", a.digest)) !== undefined);

  // A Helm chart as `helm push` builds it: a Helm config, one chart layer, no image config.
  const chartConfig = Buffer.from(JSON.stringify({ name: "demo", version: "0.1.0", apiVersion: "v2" }));
  const chart = gzipSync(randomBytes(3000));
  const helm = await push(
    d,
    "charts/demo",
    [chartConfig, chart],
    {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: blobDesc(chartConfig, "application/vnd.cncf.helm.config.v1+json"),
      layers: [blobDesc(chart, "application/vnd.cncf.helm.chart.content.v1.tar+gzip")],
    },
    "0.1.0",
  );
  const h = await copyClosure(d, m, { repository: "charts/demo", reference: "0.1.0" });
  assert.equal(h.digest, helm.digest);
  const got = await m.getBlob("charts/demo", digestOf(chart));
  const chunks: Buffer[] = [];
  for await (const c of got.stream) chunks.push(c as Buffer);
  assert.ok(Buffer.concat(chunks).equals(chart));

  // Tags and catalog with pagination (page size 1 forces the Link header).
  assert.deepEqual(
    (await d.listTags("mirror/multi", 1)).sort(),
    ["sha256-" + index.digest.slice(7), "v2"].sort(),
  );
  assert.deepEqual((await d.catalog(1)).sort(), ["charts/demo", "mirror/multi", "team/app"]);
  // Within one registry a blob is mounted, not sent.
  const mounted = await copyClosure(
    d,
    d,
    { repository: "team/app", reference: "v1" },
    { repository: "other/app", reference: "v1" },
  );
  assert.equal(mounted.blobsCopied, 0);
  assert.equal(mounted.blobsSkipped, 3);
});

test("htpasswd Basic auth: right credentials copy, wrong ones fail with UNAUTHORIZED", async () => {
  const dist = await startDistribution(cleanup, { user: "ci", password: "s3cret-pass" });
  const layout = tempDir(cleanup, "meridian-layout-");
  const digest = writeImageLayout(layout, "v1", [1000]);
  await exec("skopeo", [
    "copy",
    "--dest-tls-verify=false",
    "--dest-creds",
    "ci:s3cret-pass",
    `oci:${layout}:v1`,
    `docker://${dist.host}/a/b:v1`,
  ]);
  const good = new OciRegistryClient({
    url: dist.url,
    credentials: { username: "ci", password: "s3cret-pass" },
  });
  await good.ping();
  assert.equal((await good.getManifest("a/b", "v1"))?.digest, digest);
  const anonymous = new OciRegistryClient({ url: dist.url });
  await assert.rejects(
    anonymous.ping(),
    (e: ExternalRegistryError) => e.ociCode === "UNAUTHORIZED" && e.status === 401,
  );
  const wrong = new OciRegistryClient({ url: dist.url, credentials: { username: "ci", password: "nope" } });
  await assert.rejects(wrong.getManifest("a/b", "v1"), (e: ExternalRegistryError) => {
    assert.equal(e.ociCode, "UNAUTHORIZED");
    assert.equal(e.status, 401);
    assert.match(e.message, /credentials refused/);
    return true;
  });
});

test("a registry that accepts and never answers: the call fails within its deadline", async () => {
  const sockets = new Set<import("node:net").Socket>();
  const server = createServer((s) => sockets.add(s));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanup(() => {
    for (const s of sockets) s.destroy();
    return new Promise((r) => server.close(() => r()));
  });
  const port = (server.address() as { port: number }).port;
  const c = new OciRegistryClient({ url: `http://127.0.0.1:${port}`, deadlineMs: 500 });
  const started = Date.now();
  await assert.rejects(
    c.getManifest("x/y", "v1"),
    (e: ExternalRegistryError) => e.ociCode === "TIMEOUT" && e.status === 0,
  );
  assert.ok(Date.now() - started < 10_000);
});

test("a registry that sends wrong bytes: the manifest and the blob are refused with DIGEST_MISMATCH", async () => {
  const real = Buffer.from("the bytes that were asked for");
  const wanted = digestOf(real);
  const server = createHttpServer((req, res) => {
    const body = Buffer.from("other bytes entirely");
    res.writeHead(200, {
      "content-type": OCI_MANIFEST,
      "content-length": body.length,
      "docker-content-digest": wanted,
    });
    res.end(body);
    req.resume();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanup(() => new Promise((r) => server.close(() => r())));
  const c = new OciRegistryClient({ url: `http://127.0.0.1:${(server.address() as { port: number }).port}` });
  await assert.rejects(
    c.getManifest("x/y", wanted),
    (e: ExternalRegistryError) => e.ociCode === "DIGEST_MISMATCH",
  );
  await assert.rejects(
    c.getManifest("x/y", "v1"),
    (e: ExternalRegistryError) => e.ociCode === "DIGEST_MISMATCH",
  );
  const blob = await c.getBlob("x/y", wanted);
  await assert.rejects(
    (async () => {
      for await (const _ of blob.stream);
    })(),
    (e: ExternalRegistryError) => e.ociCode === "DIGEST_MISMATCH",
  );
});

test("Distribution's token auth: the Bearer challenge, a token from the realm with Basic credentials, cached per scope", async () => {
  const dir = tempDir(cleanup, "meridian-token-");
  const key = join(dir, "key.pem");
  const cert = join(dir, "cert.pem");
  await exec("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    key,
    "-out",
    cert,
    "-days",
    "1",
    "-subj",
    "/CN=meridian-test-token",
  ]);
  const x5c = new X509Certificate(readFileSync(cert)).raw.toString("base64");
  const signingKey = createPrivateKey(readFileSync(key));
  const asked: string[] = [];
  // The token service: checks the Basic credentials, grants what each scope asks.
  const tokens = createHttpServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const auth = req.headers.authorization ?? "";
    if (auth !== `Basic ${Buffer.from("ci:tok-pass").toString("base64")}`) {
      res.writeHead(401, { "content-type": "application/json" });
      res.end(JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message: "bad credentials" }] }));
      return;
    }
    const scopes = url.searchParams.getAll("scope");
    // Distribution lists a scope's actions in no fixed order.
    asked.push(scopes.map((x) => x.replace(/[^:]*$/, (a) => a.split(",").sort().join(","))).join(" "));
    const access = scopes.map((s) => {
      const [type, name, actions] = s.split(":");
      return { type, name, actions: (actions ?? "").split(",") };
    });
    const token = await new SignJWT({ access })
      .setProtectedHeader({ alg: "ES256", x5c: [x5c] })
      .setIssuer("meridian-test")
      .setAudience(url.searchParams.get("service") ?? "")
      .setSubject("ci")
      .setIssuedAt()
      .setNotBefore("-10s")
      .setExpirationTime("5m")
      .setJti(randomBytes(8).toString("hex"))
      .sign(signingKey);
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ token, expires_in: 300 }));
  });
  await new Promise<void>((r) => tokens.listen(0, "127.0.0.1", r));
  cleanup(() => new Promise((r) => tokens.close(() => r())));
  const realm = `http://127.0.0.1:${(tokens.address() as { port: number }).port}/token`;
  const dist = await startDistribution(cleanup, {
    token: { realm, service: "dist-test", issuer: "meridian-test", rootCertFile: cert },
  });
  const c = new OciRegistryClient({ url: dist.url, credentials: { username: "ci", password: "tok-pass" } });
  const config = Buffer.from("{}");
  const layer = gzipSync(randomBytes(2000));
  const m = await push(
    c,
    "tok/app",
    [config, layer],
    {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: blobDesc(config, "application/vnd.oci.image.config.v1+json"),
      layers: [blobDesc(layer, "application/vnd.oci.image.layer.v1.tar+gzip")],
    },
    "v1",
  );
  assert.equal((await c.getManifest("tok/app", "v1"))?.digest, m.digest);
  assert.equal((await c.getManifest("tok/app", m.digest))?.digest, m.digest);
  // One token per scope asked, reused until it expires (not one per request).
  assert.deepEqual(asked, ["repository:tok/app:pull,push", "repository:tok/app:pull"]);
  const wrong = new OciRegistryClient({ url: dist.url, credentials: { username: "ci", password: "nope" } });
  await assert.rejects(wrong.getManifest("tok/app", "v1"), (e: ExternalRegistryError) => {
    assert.equal(e.ociCode, "UNAUTHORIZED");
    assert.equal(e.status, 401);
    return true;
  });
});

test("a blob whose body stops after its headers: the stream fails within the idle bound", async () => {
  const sockets = new Set<import("node:net").Socket>();
  const server = createHttpServer((req, res) => {
    sockets.add(req.socket);
    res.writeHead(200, { "content-length": 1000 });
    res.write(Buffer.alloc(10));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanup(() => {
    for (const s of sockets) s.destroy();
    return new Promise((r) => server.close(() => r()));
  });
  const c = new OciRegistryClient({
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    idleMs: 400,
  });
  const blob = await c.getBlob("x/y", digestOf("whatever"));
  await assert.rejects(
    (async () => {
      for await (const _ of blob.stream);
    })(),
    (e: ExternalRegistryError) => e.ociCode === "TIMEOUT",
  );
});

test("credentials files: username:password, JSON, a bare token; empty or malformed ones refused", () => {
  assert.deepEqual(parseCredentials("ci:pa:ss\n"), { username: "ci", password: "pa:ss" });
  assert.deepEqual(parseCredentials('{"username":"u","password":"p"}'), { username: "u", password: "p" });
  assert.deepEqual(parseCredentials('{"token":"abc"}\n'), { token: "abc" });
  assert.deepEqual(parseCredentials("eyJhbGciOi.token\n"), { token: "eyJhbGciOi.token" });
  for (const bad of ["", "\n", ":p", "u:", "{not json", '{"username":"u"}', "a:b\nc:d"])
    assert.throws(() => parseCredentials(bad), CredentialsFileError, JSON.stringify(bad));
});

test("TLS: trusted through the endpoint's CA file, refused without it, accepted with verification off", async () => {
  const dir = tempDir(cleanup, "meridian-tls-");
  const f = (n: string) => join(dir, n);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await exec("openssl", [
    "req",
    "-x509",
    ...ec,
    "-keyout",
    f("ca.key"),
    "-out",
    f("ca.pem"),
    "-days",
    "1",
    "-subj",
    "/CN=meridian-test-ca",
  ]);
  await exec("openssl", [
    "req",
    ...ec,
    "-keyout",
    f("srv.key"),
    "-out",
    f("srv.csr"),
    "-subj",
    "/CN=127.0.0.1",
  ]);
  writeFileSync(f("ext"), "subjectAltName=IP:127.0.0.1\n");
  await exec("openssl", [
    "x509",
    "-req",
    "-in",
    f("srv.csr"),
    "-CA",
    f("ca.pem"),
    "-CAkey",
    f("ca.key"),
    "-CAcreateserial",
    "-out",
    f("srv.pem"),
    "-days",
    "1",
    "-extfile",
    f("ext"),
  ]);
  const dist = await startDistribution(cleanup, { tls: { certFile: f("srv.pem"), keyFile: f("srv.key") } });
  assert.ok(dist.url.startsWith("https://"));
  await new OciRegistryClient({ url: dist.url, ca: readFileSync(f("ca.pem")) }).ping();
  await assert.rejects(
    new OciRegistryClient({ url: dist.url, deadlineMs: 5000 }).ping(),
    (e: ExternalRegistryError) => e.ociCode === "CONNECT" && /certificate/i.test(e.message),
  );
  await new OciRegistryClient({ url: dist.url, insecure: true }).ping();
});
