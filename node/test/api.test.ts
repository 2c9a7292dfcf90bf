/**
 * The OCI Distribution API, endpoint by endpoint and error by error, against a
 * real node (in-process HTTP server on a loopback port) and a real nats-server.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { cleanupStack, startTestNats, startTestNode } from "../../testing/harness.js";
import {
  errorCode,
  OCI_CONFIG,
  OCI_INDEX,
  OCI_LAYER,
  OCI_MANIFEST,
  OciClient,
  sha256,
} from "../../testing/oci-client.js";

let c: OciClient;
const cleanup = cleanupStack({ after });

before(async () => {
  const nats = await startTestNats(cleanup);
  const node = await startTestNode(cleanup, { nats: nats.url });
  c = new OciClient(node.url);
});

async function expectError(res: Response, status: number, code: string): Promise<void> {
  assert.equal(res.status, status, `status of ${res.url}`);
  assert.match(res.headers.get("content-type") ?? "", /application\/json/);
  assert.equal(await errorCode(res), code);
}

describe("base and routing", () => {
  test("GET /v2/ answers 200 with the API version header", async () => {
    const res = await c.fetch("/v2/");
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("docker-distribution-api-version"), "registry/2.0");
    assert.deepEqual(await res.json(), {});
  });
  test("an unknown endpoint is 404 in the OCI envelope", async () => {
    await expectError(await c.fetch("/v2/foo/bar/nothing"), 404, "UNSUPPORTED");
    await expectError(await c.fetch("/elsewhere"), 404, "UNSUPPORTED");
  });
  test("a method the endpoint does not have is 405 UNSUPPORTED", async () => {
    await expectError(await c.fetch("/v2/foo/tags/list", { method: "DELETE" }), 405, "UNSUPPORTED");
  });
  test("invalid repository names are 400 NAME_INVALID", async () => {
    for (const name of ["Upper/case", "a..b", "a/.b", "-lead", "a//b", "a_", `${"x".repeat(256)}`]) {
      const res = await c.fetch(`/v2/${name}/tags/list`);
      await expectError(res, 400, "NAME_INVALID");
    }
  });
});

describe("blobs", () => {
  test("monolithic POST with digest stores the blob; GET and HEAD serve it", async () => {
    const bytes = randomBytes(5000);
    const digest = sha256(bytes);
    const res = await c.fetch(`/v2/blobs/mono/blobs/uploads/?digest=${digest}`, {
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body: bytes,
    });
    assert.equal(res.status, 201);
    assert.equal(res.headers.get("location"), `/v2/blobs/mono/blobs/${digest}`);
    assert.equal(res.headers.get("docker-content-digest"), digest);
    const get = await c.fetch(`/v2/blobs/mono/blobs/${digest}`);
    assert.equal(get.status, 200);
    assert.equal(get.headers.get("docker-content-digest"), digest);
    assert.equal(get.headers.get("content-length"), "5000");
    assert.deepEqual(Buffer.from(await get.arrayBuffer()), bytes);
    const head = await c.fetch(`/v2/blobs/mono/blobs/${digest}`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-length"), "5000");
    assert.equal((await head.arrayBuffer()).byteLength, 0);
  });

  test("a monolithic upload whose bytes do not match the digest is DIGEST_INVALID and stores nothing", async () => {
    const bytes = randomBytes(100);
    const wrong = sha256(randomBytes(100));
    const res = await c.fetch(`/v2/blobs/bad/blobs/uploads/?digest=${wrong}`, {
      method: "POST",
      body: bytes,
    });
    await expectError(res, 400, "DIGEST_INVALID");
    await expectError(await c.fetch(`/v2/blobs/bad/blobs/${wrong}`, { method: "GET" }), 404, "BLOB_UNKNOWN");
    assert.equal((await c.fetch(`/v2/blobs/bad/blobs/${sha256(bytes)}`, { method: "HEAD" })).status, 404);
  });

  test("a short body with a Content-Length that does not match is refused", async () => {
    const bytes = randomBytes(100);
    const digest = sha256(bytes);
    const res = await c.fetch(`/v2/blobs/len/blobs/uploads/?digest=${sha256(bytes.subarray(0, 50))}`, {
      method: "POST",
      body: bytes.subarray(0, 50),
    });
    assert.equal(res.status, 201);
    assert.equal((await c.fetch(`/v2/blobs/len/blobs/${digest}`, { method: "HEAD" })).status, 404);
  });

  test("unknown, malformed and other-repository blobs", async () => {
    const d = await c.pushBlob("blobs/owner", randomBytes(10));
    await expectError(await c.fetch(`/v2/blobs/other/blobs/${d.digest}`), 404, "BLOB_UNKNOWN");
    await expectError(await c.fetch(`/v2/blobs/owner/blobs/${sha256("nothing")}`), 404, "BLOB_UNKNOWN");
    await expectError(await c.fetch("/v2/blobs/owner/blobs/sha256:xyz"), 400, "DIGEST_INVALID");
    await expectError(await c.fetch(`/v2/blobs/owner/blobs/md5:${"a".repeat(32)}`), 400, "DIGEST_INVALID");
  });

  test("a HEAD of a missing blob answers what its GET answers, less the body (the miss is not thrown)", async () => {
    const d = await c.pushBlob("blobs/headmiss", randomBytes(10));
    for (const path of [
      `/v2/blobs/headmiss-other/blobs/${d.digest}`,
      `/v2/blobs/headmiss/blobs/${sha256("none")}`,
    ]) {
      const get = await c.fetch(path);
      const body = await get.text();
      const head = await c.fetch(path, { method: "HEAD" });
      assert.equal(head.status, 404);
      assert.equal(get.status, 404);
      assert.equal(JSON.parse(body).errors[0].code, "BLOB_UNKNOWN");
      for (const h of ["content-type", "content-length", "docker-distribution-api-version"])
        assert.equal(head.headers.get(h), get.headers.get(h), h);
      assert.equal(head.headers.get("content-length"), String(Buffer.byteLength(body)));
      assert.equal((await head.arrayBuffer()).byteLength, 0);
    }
    const malformed = await c.fetch("/v2/blobs/headmiss/blobs/sha256:xyz", { method: "HEAD" });
    assert.equal(malformed.status, 400);
    const hit = await c.fetch(`/v2/blobs/headmiss/blobs/${d.digest}`, { method: "HEAD" });
    assert.equal(hit.status, 200);
    assert.equal(hit.headers.get("content-length"), "10");
    assert.equal(hit.headers.get("docker-content-digest"), d.digest);
  });

  test("Range requests: 206 with Content-Range, suffix and open ranges, 416 otherwise", async () => {
    const bytes = Buffer.from("0123456789abcdefghij");
    const { digest } = await c.pushBlob("blobs/range", bytes);
    const path = `/v2/blobs/range/blobs/${digest}`;
    const cases: Array<[string, string, string]> = [
      ["bytes=0-9", "0123456789", "bytes 0-9/20"],
      ["bytes=15-", "fghij", "bytes 15-19/20"],
      ["bytes=-3", "hij", "bytes 17-19/20"],
      ["bytes=18-100", "ij", "bytes 18-19/20"],
    ];
    for (const [range, body, contentRange] of cases) {
      const res = await c.fetch(path, { headers: { range } });
      assert.equal(res.status, 206, range);
      assert.equal(res.headers.get("content-range"), contentRange);
      assert.equal(await res.text(), body);
    }
    for (const range of ["bytes=20-", "bytes=5-2", "items=0-1", "bytes=0-1,3-4", "bytes=-0"]) {
      const res = await c.fetch(path, { headers: { range } });
      assert.equal(res.status, 416, range);
      assert.equal(res.headers.get("content-range"), "bytes */20");
      assert.equal(await errorCode(res), "RANGE_INVALID");
    }
  });

  test("DELETE unlinks the blob from the repository (202), then it is unknown", async () => {
    const d = await c.pushBlob("blobs/del", randomBytes(10));
    const res = await c.fetch(`/v2/blobs/del/blobs/${d.digest}`, { method: "DELETE" });
    assert.equal(res.status, 202);
    await expectError(await c.fetch(`/v2/blobs/del/blobs/${d.digest}`), 404, "BLOB_UNKNOWN");
    await expectError(
      await c.fetch(`/v2/blobs/del/blobs/${d.digest}`, { method: "DELETE" }),
      404,
      "BLOB_UNKNOWN",
    );
  });
});

describe("upload sessions", () => {
  async function start(repo: string): Promise<string> {
    const res = await c.fetch(`/v2/${repo}/blobs/uploads/`, { method: "POST" });
    assert.equal(res.status, 202);
    assert.equal(res.headers.get("range"), "0-0");
    assert.match(res.headers.get("docker-upload-uuid") ?? "", /^[0-9a-f-]{36}$/);
    const location = res.headers.get("location")!;
    assert.match(location, new RegExp(`^/v2/${repo}/blobs/uploads/[0-9a-f-]{36}$`));
    return location;
  }

  test("chunks in order, status, and PUT to complete", async () => {
    const bytes = randomBytes(30);
    const loc = await start("up/chunks");
    let res = await c.fetch(loc, {
      method: "PATCH",
      headers: { "content-range": "0-9" },
      body: bytes.subarray(0, 10),
    });
    assert.equal(res.status, 202);
    assert.equal(res.headers.get("range"), "0-9");
    res = await c.fetch(loc, {
      method: "PATCH",
      headers: { "content-range": "10-19" },
      body: bytes.subarray(10, 20),
    });
    assert.equal(res.headers.get("range"), "0-19");
    res = await c.fetch(loc);
    assert.equal(res.status, 204);
    assert.equal(res.headers.get("range"), "0-19");
    assert.equal(res.headers.get("location"), loc);
    const digest = sha256(bytes);
    res = await c.fetch(`${loc}?digest=${digest}`, {
      method: "PUT",
      headers: { "content-range": "20-29" },
      body: bytes.subarray(20),
    });
    assert.equal(res.status, 201);
    assert.equal(res.headers.get("docker-content-digest"), digest);
    assert.equal(res.headers.get("location"), `/v2/up/chunks/blobs/${digest}`);
    assert.deepEqual(
      Buffer.from(await (await c.fetch(`/v2/up/chunks/blobs/${digest}`)).arrayBuffer()),
      bytes,
    );
    await expectError(await c.fetch(loc), 404, "BLOB_UPLOAD_UNKNOWN");
  });

  test("a chunk out of order is 416 and changes nothing", async () => {
    const loc = await start("up/order");
    await c.fetch(loc, { method: "PATCH", headers: { "content-range": "0-4" }, body: "abcde" });
    const res = await c.fetch(loc, { method: "PATCH", headers: { "content-range": "10-14" }, body: "klmno" });
    assert.equal(res.status, 416);
    assert.equal(await errorCode(res), "BLOB_UPLOAD_INVALID");
    assert.equal(res.headers.get("range"), "0-4");
    const status = await c.fetch(loc);
    assert.equal(status.headers.get("range"), "0-4");
    const bad = await c.fetch(loc, { method: "PATCH", headers: { "content-range": "garbage" }, body: "x" });
    assert.equal(bad.status, 416);
  });

  test("Content-Length disagreeing with Content-Range is SIZE_INVALID", async () => {
    const loc = await start("up/len");
    const res = await c.fetch(loc, {
      method: "PATCH",
      headers: { "content-range": "0-9", "content-length": "5" },
      body: "abcde",
    });
    await expectError(res, 400, "SIZE_INVALID");
  });

  test("a streamed PATCH without Content-Range appends", async () => {
    const loc = await start("up/stream");
    await c.fetch(loc, { method: "PATCH", body: "hello " });
    const res = await c.fetch(loc, { method: "PATCH", body: "world" });
    assert.equal(res.headers.get("range"), "0-10");
    const done = await c.fetch(`${loc}?digest=${sha256("hello world")}`, { method: "PUT" });
    assert.equal(done.status, 201);
  });

  test("PUT without a digest, or with the wrong one, is DIGEST_INVALID; a wrong one ends the session", async () => {
    const loc = await start("up/digest");
    await c.fetch(loc, { method: "PATCH", body: "content" });
    await expectError(await c.fetch(loc, { method: "PUT" }), 400, "DIGEST_INVALID");
    await expectError(await c.fetch(`${loc}?digest=sha256:nothex`, { method: "PUT" }), 400, "DIGEST_INVALID");
    const wrong = sha256("other");
    await expectError(await c.fetch(`${loc}?digest=${wrong}`, { method: "PUT" }), 400, "DIGEST_INVALID");
    await expectError(await c.fetch(loc), 404, "BLOB_UPLOAD_UNKNOWN");
    assert.equal((await c.fetch(`/v2/up/digest/blobs/${wrong}`, { method: "HEAD" })).status, 404);
    assert.equal((await c.fetch(`/v2/up/digest/blobs/${sha256("content")}`, { method: "HEAD" })).status, 404);
  });

  test("DELETE cancels a session; unknown, malformed and other-repository ids are BLOB_UPLOAD_UNKNOWN", async () => {
    const loc = await start("up/cancel");
    assert.equal((await c.fetch(loc, { method: "DELETE" })).status, 204);
    await expectError(await c.fetch(loc), 404, "BLOB_UPLOAD_UNKNOWN");
    await expectError(await c.fetch(loc, { method: "DELETE" }), 404, "BLOB_UPLOAD_UNKNOWN");
    const other = await start("up/mine");
    await expectError(await c.fetch(other.replace("up/mine", "up/theirs")), 404, "BLOB_UPLOAD_UNKNOWN");
    await expectError(await c.fetch("/v2/up/mine/blobs/uploads/not-a-uuid"), 404, "BLOB_UPLOAD_UNKNOWN");
    await expectError(await c.fetch("/v2/up/mine/blobs/uploads/..%2f..%2fetc"), 404, "BLOB_UPLOAD_UNKNOWN");
  });

  test("cross-repository mount: 201 when the source has the blob, else a 202 session", async () => {
    const d = await c.pushBlob("mount/src", randomBytes(64));
    let res = await c.fetch(`/v2/mount/dst/blobs/uploads/?mount=${d.digest}&from=mount/src`, {
      method: "POST",
    });
    assert.equal(res.status, 201);
    assert.equal(res.headers.get("location"), `/v2/mount/dst/blobs/${d.digest}`);
    assert.equal((await c.fetch(`/v2/mount/dst/blobs/${d.digest}`, { method: "HEAD" })).status, 200);
    res = await c.fetch(`/v2/mount/dst2/blobs/uploads/?mount=${d.digest}&from=mount/none`, {
      method: "POST",
    });
    assert.equal(res.status, 202);
    assert.match(res.headers.get("location")!, /\/blobs\/uploads\//);
    res = await c.fetch(`/v2/mount/dst2/blobs/uploads/?mount=${d.digest}`, { method: "POST" });
    assert.equal(res.status, 202);
    await expectError(
      await c.fetch(`/v2/mount/dst/blobs/uploads/?mount=sha256:zz&from=mount/src`, { method: "POST" }),
      400,
      "DIGEST_INVALID",
    );
  });
});

describe("manifests", () => {
  test("PUT by tag keeps the exact bytes; GET and HEAD by tag and by digest", async () => {
    const config = await c.pushBlob("man/exact", Buffer.from("{}"), OCI_CONFIG);
    const layer = await c.pushBlob("man/exact", randomBytes(100));
    // Unusual whitespace and key order: the registry must not re-serialize.
    const text = `{ "schemaVersion": 2,\n  "mediaType": "${OCI_MANIFEST}",\n "config": ${JSON.stringify(config)}, "layers": [${JSON.stringify(layer)}]   }`;
    const res = await c.fetch("/v2/man/exact/manifests/v1", {
      method: "PUT",
      headers: { "content-type": OCI_MANIFEST },
      body: text,
    });
    assert.equal(res.status, 201);
    const digest = sha256(text);
    assert.equal(res.headers.get("docker-content-digest"), digest);
    assert.equal(res.headers.get("location"), `/v2/man/exact/manifests/${digest}`);
    for (const ref of ["v1", digest]) {
      const get = await c.fetch(`/v2/man/exact/manifests/${ref}`, { headers: { accept: OCI_MANIFEST } });
      assert.equal(get.status, 200);
      assert.equal(get.headers.get("content-type"), OCI_MANIFEST);
      assert.equal(get.headers.get("docker-content-digest"), digest);
      assert.equal(await get.text(), text);
      const head = await c.fetch(`/v2/man/exact/manifests/${ref}`, { method: "HEAD" });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get("content-length"), String(Buffer.byteLength(text)));
      assert.equal(head.headers.get("docker-content-digest"), digest);
    }
  });

  test("PUT by digest must match the bytes", async () => {
    const img = await c.pushRandomImage("man/bydigest", "t");
    const bytes = Buffer.from(JSON.stringify(img.manifest));
    const ok = await c.fetch(`/v2/man/bydigest/manifests/${sha256(bytes)}`, {
      method: "PUT",
      headers: { "content-type": OCI_MANIFEST },
      body: bytes,
    });
    assert.equal(ok.status, 201);
    const bad = await c.fetch(`/v2/man/bydigest/manifests/${sha256("x")}`, {
      method: "PUT",
      headers: { "content-type": OCI_MANIFEST },
      body: bytes,
    });
    await expectError(bad, 400, "DIGEST_INVALID");
  });

  test("references to blobs or child manifests not in the repository are MANIFEST_BLOB_UNKNOWN", async () => {
    const config = await c.pushBlob("man/refs", Buffer.from("{}"), OCI_CONFIG);
    const missing = { mediaType: OCI_LAYER, digest: sha256("absent"), size: 6 };
    const res = await c.fetch("/v2/man/refs/manifests/v1", {
      method: "PUT",
      headers: { "content-type": OCI_MANIFEST },
      body: JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [missing] }),
    });
    await expectError(res, 400, "MANIFEST_BLOB_UNKNOWN");
    // A blob of another repository does not count.
    const elsewhere = await c.pushBlob("man/elsewhere", randomBytes(10));
    const res2 = await c.fetch("/v2/man/refs/manifests/v1", {
      method: "PUT",
      headers: { "content-type": OCI_MANIFEST },
      body: JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [elsewhere] }),
    });
    await expectError(res2, 400, "MANIFEST_BLOB_UNKNOWN");
    const index = {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [{ mediaType: OCI_MANIFEST, digest: sha256("no such manifest"), size: 16 }],
    };
    const res3 = await c.fetch("/v2/man/refs/manifests/idx", {
      method: "PUT",
      headers: { "content-type": OCI_INDEX },
      body: JSON.stringify(index),
    });
    await expectError(res3, 400, "MANIFEST_BLOB_UNKNOWN");
    await expectError(await c.fetch("/v2/man/refs/manifests/v1"), 404, "MANIFEST_UNKNOWN");
  });

  test("malformed manifests and mismatched Content-Type are MANIFEST_INVALID", async () => {
    const config = await c.pushBlob("man/invalid", Buffer.from("{}"), OCI_CONFIG);
    const good = { schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [] };
    const cases: Array<[string, string]> = [
      ["not json", OCI_MANIFEST],
      [JSON.stringify({ ...good, schemaVersion: 1 }), OCI_MANIFEST],
      [JSON.stringify(good), OCI_INDEX],
      [
        JSON.stringify({ ...good, config: { mediaType: OCI_CONFIG, digest: "sha256:bad", size: 2 } }),
        OCI_MANIFEST,
      ],
      [
        JSON.stringify({ ...good, layers: [{ mediaType: OCI_LAYER, digest: config.digest, size: -1 }] }),
        OCI_MANIFEST,
      ],
      [JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, layers: [] }), OCI_MANIFEST],
      [JSON.stringify(good), "text/plain"],
    ];
    for (const [body, type] of cases) {
      const res = await c.fetch("/v2/man/invalid/manifests/t", {
        method: "PUT",
        headers: { "content-type": type },
        body,
      });
      await expectError(res, 400, "MANIFEST_INVALID");
    }
    await expectError(await c.fetch("/v2/man/invalid/manifests/t"), 404, "MANIFEST_UNKNOWN");
  });

  test("a 4 MiB manifest is accepted; one byte more is 413", async () => {
    const config = await c.pushBlob("man/big", Buffer.from("{}"), OCI_CONFIG);
    const base = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config,
      layers: [],
      annotations: { pad: "" },
    });
    const limit = 4 * 1024 * 1024;
    const exact = base.replace('"pad":""', `"pad":"${"x".repeat(limit - base.length)}"`);
    assert.equal(Buffer.byteLength(exact), limit);
    const ok = await c.fetch("/v2/man/big/manifests/max", {
      method: "PUT",
      headers: { "content-type": OCI_MANIFEST },
      body: exact,
    });
    assert.equal(ok.status, 201);
    assert.equal((await (await c.fetch("/v2/man/big/manifests/max")).text()).length, limit);
    const over = exact.replace('"pad":"', '"pad":"y');
    const res = await c.fetch("/v2/man/big/manifests/over", {
      method: "PUT",
      headers: { "content-type": OCI_MANIFEST },
      body: over,
    });
    await expectError(res, 413, "SIZE_INVALID");
    await expectError(await c.fetch("/v2/man/big/manifests/over"), 404, "MANIFEST_UNKNOWN");
  });

  test("Docker schema2 manifests and manifest lists; OCI indexes", async () => {
    const dockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
    const dockerList = "application/vnd.docker.distribution.manifest.list.v2+json";
    const config = await c.pushBlob(
      "man/docker",
      Buffer.from('{"os":"linux"}'),
      "application/vnd.docker.container.image.v1+json",
    );
    const layer = await c.pushBlob(
      "man/docker",
      randomBytes(50),
      "application/vnd.docker.image.rootfs.diff.tar.gzip",
    );
    const m = await c.pushManifest(
      "man/docker",
      "amd64",
      { schemaVersion: 2, mediaType: dockerManifest, config, layers: [layer] },
      dockerManifest,
    );
    const child = {
      mediaType: dockerManifest,
      digest: m.digest,
      size: m.bytes.byteLength,
      platform: { architecture: "amd64", os: "linux" },
    };
    const list = await c.pushManifest(
      "man/docker",
      "latest",
      { schemaVersion: 2, mediaType: dockerList, manifests: [child] },
      dockerList,
    );
    const get = await c.fetch("/v2/man/docker/manifests/latest");
    assert.equal(get.headers.get("content-type"), dockerList);
    assert.equal(get.headers.get("docker-content-digest"), list.digest);
    const idx = await c.pushManifest(
      "man/docker",
      "oci-index",
      { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [child] },
      OCI_INDEX,
    );
    assert.equal(
      (await c.fetch(`/v2/man/docker/manifests/${idx.digest}`)).headers.get("content-type"),
      OCI_INDEX,
    );
  });

  test("unknown and malformed references", async () => {
    await c.pushRandomImage("man/refsyntax", "v1");
    await expectError(await c.fetch("/v2/man/refsyntax/manifests/nope"), 404, "MANIFEST_UNKNOWN");
    await expectError(await c.fetch(`/v2/man/refsyntax/manifests/${sha256("x")}`), 404, "MANIFEST_UNKNOWN");
    // A reference that is neither a tag nor a digest names nothing that can exist: 404, as
    // Distribution, zot and the OCI conformance suite answer, for GET and HEAD alike.
    for (const ref of [
      "sha256:short",
      "md5:0123456789abcdef0123456789abcdef",
      `.bad${"x".repeat(5)}`,
      "t".repeat(129),
    ]) {
      await expectError(await c.fetch(`/v2/man/refsyntax/manifests/${ref}`), 404, "MANIFEST_UNKNOWN");
      const head = await c.fetch(`/v2/man/refsyntax/manifests/${ref}`, { method: "HEAD" });
      assert.equal(head.status, 404, ref);
    }
    // Writing one is still the client's malformed request.
    const img = await c.pushRandomImage("man/refsyntax", "v2");
    await expectError(
      await c.fetch(`/v2/man/refsyntax/manifests/.bad${"x".repeat(5)}`, {
        method: "PUT",
        headers: { "content-type": OCI_MANIFEST },
        body: JSON.stringify(img.manifest),
      }),
      400,
      "MANIFEST_INVALID",
    );
  });

  test("DELETE by tag removes only the tag; DELETE by digest removes the manifest and its tags", async () => {
    const img = await c.pushRandomImage("man/del", "a");
    await c.pushManifest("man/del", "b", img.manifest);
    let res = await c.fetch("/v2/man/del/manifests/a", { method: "DELETE" });
    assert.equal(res.status, 202);
    await expectError(await c.fetch("/v2/man/del/manifests/a"), 404, "MANIFEST_UNKNOWN");
    assert.equal((await c.fetch(`/v2/man/del/manifests/${img.digest}`)).status, 200);
    assert.equal((await c.fetch("/v2/man/del/manifests/b")).status, 200);
    res = await c.fetch(`/v2/man/del/manifests/${img.digest}`, { method: "DELETE" });
    assert.equal(res.status, 202);
    await expectError(await c.fetch(`/v2/man/del/manifests/${img.digest}`), 404, "MANIFEST_UNKNOWN");
    await expectError(await c.fetch("/v2/man/del/manifests/b"), 404, "MANIFEST_UNKNOWN");
    assert.deepEqual(
      ((await (await c.fetch("/v2/man/del/tags/list")).json()) as { tags: string[] }).tags,
      [],
    );
    await expectError(
      await c.fetch(`/v2/man/del/manifests/${img.digest}`, { method: "DELETE" }),
      404,
      "MANIFEST_UNKNOWN",
    );
    await expectError(
      await c.fetch("/v2/man/del/manifests/a", { method: "DELETE" }),
      404,
      "MANIFEST_UNKNOWN",
    );
    // b's manifest is gone, so b is not shown, and cannot be deleted.
    await expectError(
      await c.fetch("/v2/man/del/manifests/b", { method: "DELETE" }),
      404,
      "MANIFEST_UNKNOWN",
    );
  });

  test("moving a tag points it at the newest manifest", async () => {
    const one = await c.pushRandomImage("man/move", "latest");
    const two = await c.pushRandomImage("man/move", "latest");
    assert.notEqual(one.digest, two.digest);
    assert.equal(
      (await c.fetch("/v2/man/move/manifests/latest")).headers.get("docker-content-digest"),
      two.digest,
    );
  });
});

describe("referrers", () => {
  test("a manifest with a subject answers OCI-Subject and is listed, filterable by artifactType", async () => {
    const subject = await c.pushRandomImage("ref/app", "v1");
    const subjectDesc = {
      mediaType: OCI_MANIFEST,
      digest: subject.digest,
      size: Buffer.byteLength(JSON.stringify(subject.manifest)),
    };
    const empty = await c.pushBlob("ref/app", Buffer.from("{}"), "application/vnd.oci.empty.v1+json");
    const refs: Record<string, string> = {};
    for (const type of ["application/vnd.example.sig", "application/vnd.example.sbom"]) {
      const m = {
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        artifactType: type,
        config: empty,
        layers: [empty],
        subject: subjectDesc,
        annotations: { kind: type },
      };
      const res = await c.pushManifest("ref/app", sha256(JSON.stringify(m)), m);
      assert.equal(res.response.headers.get("oci-subject"), subject.digest);
      refs[type] = res.digest;
    }
    let res = await c.fetch(`/v2/ref/app/referrers/${subject.digest}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), OCI_INDEX);
    assert.equal(res.headers.get("oci-filters-applied"), null);
    const all = (await res.json()) as {
      schemaVersion: number;
      mediaType: string;
      manifests: Array<Record<string, unknown>>;
    };
    assert.equal(all.schemaVersion, 2);
    assert.equal(all.mediaType, OCI_INDEX);
    assert.deepEqual(new Set(all.manifests.map((d) => d.digest)), new Set(Object.values(refs)));
    for (const d of all.manifests) {
      assert.equal(d.mediaType, OCI_MANIFEST);
      assert.ok(typeof d.size === "number" && d.size > 0);
      assert.deepEqual(d.annotations, { kind: d.artifactType });
    }
    res = await c.fetch(`/v2/ref/app/referrers/${subject.digest}?artifactType=application/vnd.example.sbom`);
    assert.equal(res.headers.get("oci-filters-applied"), "artifactType");
    const sbom = (await res.json()) as { manifests: Array<{ digest: string }> };
    assert.deepEqual(
      sbom.manifests.map((d) => d.digest),
      [refs["application/vnd.example.sbom"]],
    );
    // Deleting a referrer removes it from the list.
    await c.fetch(`/v2/ref/app/manifests/${refs["application/vnd.example.sbom"]}`, { method: "DELETE" });
    const after = (await (await c.fetch(`/v2/ref/app/referrers/${subject.digest}`)).json()) as {
      manifests: unknown[];
    };
    assert.equal(after.manifests.length, 1);
  });

  test("an unknown subject has an empty list; a bad digest is DIGEST_INVALID", async () => {
    const res = await c.fetch(`/v2/ref/none/referrers/${sha256("nothing")}`);
    assert.equal(res.status, 200);
    assert.deepEqual(((await res.json()) as { manifests: unknown[] }).manifests, []);
    await expectError(await c.fetch("/v2/ref/none/referrers/sha256:bad"), 400, "DIGEST_INVALID");
  });
});

describe("tags and catalog", () => {
  test("tags are listed in lexical order with n, last and a Link header", async () => {
    const img = await c.pushRandomImage("tags/app", "v3");
    for (const tag of ["v1", "v2", "A", "latest"]) await c.pushManifest("tags/app", tag, img.manifest);
    let res = await c.fetch("/v2/tags/app/tags/list");
    assert.deepEqual(await res.json(), { name: "tags/app", tags: ["A", "latest", "v1", "v2", "v3"] });
    assert.equal(res.headers.get("link"), null);
    res = await c.fetch("/v2/tags/app/tags/list?n=2");
    assert.deepEqual(((await res.json()) as { tags: string[] }).tags, ["A", "latest"]);
    assert.equal(res.headers.get("link"), '</v2/tags/app/tags/list?n=2&last=latest>; rel="next"');
    res = await c.fetch("/v2/tags/app/tags/list?n=2&last=latest");
    assert.deepEqual(((await res.json()) as { tags: string[] }).tags, ["v1", "v2"]);
    res = await c.fetch("/v2/tags/app/tags/list?n=10&last=v2");
    assert.deepEqual(((await res.json()) as { tags: string[] }).tags, ["v3"]);
    assert.equal(res.headers.get("link"), null);
    res = await c.fetch("/v2/tags/app/tags/list?n=0");
    assert.deepEqual(((await res.json()) as { tags: string[] }).tags, []);
  });

  test("tag list errors: unknown repository, bad n", async () => {
    await expectError(await c.fetch("/v2/tags/unknown/tags/list"), 404, "NAME_UNKNOWN");
    await c.pushRandomImage("tags/errs", "v1");
    for (const n of ["-1", "abc", "1.5"]) {
      await expectError(await c.fetch(`/v2/tags/errs/tags/list?n=${n}`), 400, "PAGINATION_NUMBER_INVALID");
    }
  });

  test("the catalog lists repositories in order, paginated", async () => {
    for (const repo of ["cat/a", "cat/b", "cat/c"]) await c.pushBlob(repo, randomBytes(4));
    const all = (await (await c.fetch("/v2/_catalog")).json()) as { repositories: string[] };
    const cats = all.repositories.filter((r) => r.startsWith("cat/"));
    assert.deepEqual(cats, ["cat/a", "cat/b", "cat/c"]);
    assert.deepEqual([...all.repositories].sort(), all.repositories);
    const res = await c.fetch("/v2/_catalog?n=1&last=cat/a");
    assert.deepEqual(await res.json(), { repositories: ["cat/b"] });
    assert.equal(res.headers.get("link"), '</v2/_catalog?n=1&last=cat%2Fb>; rel="next"');
    await expectError(await c.fetch("/v2/_catalog?n=x"), 400, "PAGINATION_NUMBER_INVALID");
  });
});

describe("chunked uploads of a larger blob", () => {
  test("8 MiB in 1 MiB chunks verifies and reads back", async () => {
    const bytes = randomBytes(8 << 20);
    const d = await c.pushBlobChunked("big/chunked", bytes, 1 << 20);
    const res = await c.fetch(`/v2/big/chunked/blobs/${d.digest}`);
    assert.equal(sha256(Buffer.from(await res.arrayBuffer())), d.digest);
  });
});
