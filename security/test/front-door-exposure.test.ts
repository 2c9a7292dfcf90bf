/**
 * Finding 12 of issue 10, the front door's parts, against `meridian up
 * --auth` (two regions and the front door as real processes):
 * - client-controlled routing input (`_region`) that does not parse is a
 *   400 with the OCI envelope, never a 500, and leaves no error-level stack
 *   trace in the front door's log;
 * - `/healthz` tells anonymous callers liveness only, not the home rules
 *   (which name private repositories); a system admin still sees them all;
 * - the front door's mesh certificate (`front-door`) gets Status from a
 *   region's peer and nothing that serves content (FetchBlob, GetManifest,
 *   HasBlobs, Summarize, RepoState, FetchFromMesh, Locate …:
 *   PERMISSION_DENIED), while a region's certificate still gets them.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { peerPackage } from "../../mesh-client/proto.js";
import { cleanupStack, eventually, runCli } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";
import { OCI_MANIFEST, OciClient, sha256 } from "../../testing/oci-client.js";

const cleanup = cleanupStack({ after });
const SECRET_REPO = "hidden-team/secret-app";

let mesh: RunningMesh;
let adminAuth: string;

before(async () => {
  mesh = await startMesh(cleanup, ["a", "b"], undefined, ["--auth"]);
  const password = readFileSync(mesh.adminPasswordFile!, "utf8").trim();
  adminAuth = `Basic ${Buffer.from(`admin:${password}`).toString("base64")}`;
});

const frontDoorLog = () => readFileSync(join(mesh.dataDir, "front-door.log"), "utf8");

describe("client-controlled routing input", () => {
  const malformed = ["%E0%A4%A", "%zz", "..%2F..%2Fetc", "A".repeat(300), "b%00"];
  for (const value of malformed) {
    test(`_region=${value.slice(0, 16)} is a 400 with the OCI envelope`, async () => {
      for (const method of ["GET", "PATCH", "PUT"]) {
        const res = await fetch(
          `${mesh.frontDoor}/v2/lib/app/blobs/uploads/00000000-0000-4000-8000-000000000000?_region=${value}`,
          { method, headers: { authorization: adminAuth } },
        );
        assert.equal(res.status, 400, `${method}: ${res.status}`);
        const body = (await res.json()) as { errors: Array<{ code: string; message: string }> };
        assert.equal(body.errors[0]!.code, "UNSUPPORTED");
        assert.match(body.errors[0]!.message, /_region/);
      }
    });
  }

  test("none of it reached the log as an error with a stack", () => {
    const lines = frontDoorLog()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as { level: number; msg: string; err?: { stack?: string } });
    const errors = lines.filter((l) => l.level >= 50 || l.err?.stack?.includes("URIError"));
    assert.deepEqual(
      errors.map((l) => l.msg),
      [],
    );
  });
});

describe("/healthz", () => {
  before(async () => {
    // A private project's repository gets a home rule: its name is what must not leak.
    const project = await runCli(["project", "set", "hidden-team", "--private", "--data", mesh.dataDir]);
    assert.equal(project.code, 0, project.stderr);
    const rule = await runCli(["tag", "rule", SECRET_REPO, "lww", "--home", "a", "--data", mesh.dataDir]);
    assert.equal(rule.code, 0, rule.stderr);
    await eventually(
      async () => {
        const res = await fetch(`${mesh.frontDoor}/healthz`, { headers: { authorization: adminAuth } });
        return res.status === 200 && (await res.text()).includes(SECRET_REPO);
      },
      20_000,
      200,
    );
  });

  test("anonymous callers see liveness, not the home rules", async () => {
    const res = await fetch(`${mesh.frontDoor}/healthz`);
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.ok(!text.includes(SECRET_REPO), text);
    const body = JSON.parse(text) as { status: string; regions: Array<{ region: string; up: boolean }> };
    assert.equal(body.status, "ok");
    assert.deepEqual(
      body.regions.map((r) => [r.region, r.up]),
      [
        ["a", true],
        ["b", true],
      ],
    );
    assert.equal((body as { homes?: unknown }).homes, undefined);
  });

  test("wrong credentials get 401 and no detail; a system admin gets the whole view", async () => {
    const wrong = await fetch(`${mesh.frontDoor}/healthz`, {
      headers: { authorization: `Basic ${Buffer.from("admin:wrong").toString("base64")}` },
    });
    assert.equal(wrong.status, 401);
    assert.ok(!(await wrong.text()).includes(SECRET_REPO));
    const admin = await fetch(`${mesh.frontDoor}/healthz`, { headers: { authorization: adminAuth } });
    assert.equal(admin.status, 200);
    const body = (await admin.json()) as { homes: Array<{ scope: string; home: string }> };
    assert.ok(body.homes.some((h) => h.scope === SECRET_REPO && h.home === "a"));
  });
});

describe("the front door's mesh certificate", () => {
  let manifestDigest: string;
  let blobDigest: string;

  before(async () => {
    const client = new OciClient(registry("a"), adminAuth);
    const layer = Buffer.from("a layer only regions may fetch");
    const blob = await client.pushBlob("lib/app", layer);
    blobDigest = blob.digest;
    const config = await client.pushBlob("lib/app", Buffer.from("{}"));
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { ...config, mediaType: "application/vnd.oci.image.config.v1+json" },
      layers: [blob],
    });
    manifestDigest = sha256(manifest);
    const res = await client.fetch("/v2/lib/app/manifests/v1", {
      method: "PUT",
      headers: { "content-type": OCI_MANIFEST },
      body: manifest,
    });
    assert.equal(res.status, 201, await res.text());
  });

  const registry = (region: string) => mesh.regions.get(region)!.registry;

  /** A raw Peer client to region a's peer presenting `<data>/certs/<identity>.crt`. */
  function peerAs(identity: string) {
    const certs = join(mesh.dataDir, "certs");
    const credentials = grpc.credentials.createSsl(
      readFileSync(join(certs, "ca.crt")),
      readFileSync(join(certs, `${identity}.key`)),
      readFileSync(join(certs, `${identity}.crt`)),
    );
    const Peer = peerPackage().meridian.peer.v1.Peer;
    const client = new Peer(mesh.regions.get("a")!.grpc!, credentials, {
      "grpc.ssl_target_name_override": "a",
    });
    cleanup(() => client.close());
    return client as unknown as Record<string, (...args: unknown[]) => unknown>;
  }

  const deadline = () => ({ deadline: Date.now() + 10_000 });

  function unary(client: Record<string, (...args: unknown[]) => unknown>, method: string, request: unknown) {
    return new Promise<{ code: number; reply?: unknown }>((resolve) => {
      client[method]!.call(client, request, deadline(), (err: grpc.ServiceError | null, reply: unknown) =>
        resolve(err === null ? { code: 0, reply } : { code: err.code }),
      );
    });
  }

  function stream(client: Record<string, (...args: unknown[]) => unknown>, method: string, request: unknown) {
    return new Promise<{ code: number; bytes: number }>((resolve) => {
      const call = client[method]!.call(client, request, deadline()) as grpc.ClientReadableStream<{
        data: Buffer;
      }>;
      let bytes = 0;
      call.on("data", (chunk) => {
        bytes += chunk.data.length;
      });
      call.on("error", (err: grpc.ServiceError) => resolve({ code: err.code, bytes }));
      call.on("end", () => resolve({ code: 0, bytes }));
    });
  }

  test("gets Status", async () => {
    const status = await unary(peerAs("front-door"), "status", { fromRegion: "front-door", sentAtMs: 0 });
    assert.equal(status.code, 0);
  });

  test("is refused every RPC that serves content or reaches the mesh", async () => {
    const door = peerAs("front-door");
    const denied = grpc.status.PERMISSION_DENIED;
    const fetched = await stream(door, "fetchBlob", { digest: blobDigest, offset: 0, repo: "" });
    assert.deepEqual(fetched, { code: denied, bytes: 0 });
    const relayed = await stream(door, "fetchFromMesh", { digest: blobDigest, offset: 0, repo: "lib/app" });
    assert.deepEqual(relayed, { code: denied, bytes: 0 });
    for (const [method, request] of [
      ["getManifest", { repo: "lib/app", reference: "v1" }],
      ["hasBlobs", { digests: [blobDigest], repo: "" }],
      ["summarize", { prefix: "" }],
      ["repoState", { repo: "lib/app" }],
      ["locate", { repo: "lib/app", reference: manifestDigest, manifest: true }],
      ["waitReplicated", { repo: "lib/app", digest: manifestDigest, copies: 1, timeoutMs: 10 }],
    ] as const) {
      assert.equal((await unary(door, method, request)).code, denied, method);
    }
  });

  test("a region's certificate still fetches blobs and manifests", async () => {
    const region = peerAs("b");
    const fetched = await stream(region, "fetchBlob", { digest: blobDigest, offset: 0, repo: "" });
    assert.deepEqual(fetched, { code: 0, bytes: Buffer.byteLength("a layer only regions may fetch") });
    const manifest = await unary(region, "getManifest", { repo: "lib/app", reference: "v1" });
    assert.equal(manifest.code, 0);
  });
});
