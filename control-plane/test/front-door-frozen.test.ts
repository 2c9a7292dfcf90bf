/**
 * A frozen region behind the front door (issue 11, finding 1): its registry
 * node stopped with SIGSTOP still accepts TCP connections and answers
 * nothing. Requests routed there before health marks it down must end
 * within the front door's response bounds: reads (GET/HEAD) from the next
 * healthy region, writes with a prompt 503 in the OCI envelope. Real
 * processes (startProxiedMesh, the front door as a process); the node is
 * resumed (SIGCONT) in cleanup.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { cleanupStack, eventually, type MeridianProcess, spawnMeridian } from "../../testing/harness.js";
import { type ProxiedMesh, startProxiedMesh } from "../../testing/mesh.js";
import { OCI_MANIFEST, OciClient } from "../../testing/oci-client.js";

const cleanup = cleanupStack({ after });
const READ_MS = 2_000;
const WRITE_MS = 3_000;
/** Generous: today's code never answers; the bounds above make it a few seconds. */
const FINISHES_MS = 15_000;

let mesh: ProxiedMesh;
let frontDoor: MeridianProcess;
let url: string;

before(async () => {
  mesh = await startProxiedMesh(cleanup, ["a", "b"]);
  frontDoor = await spawnMeridian(cleanup, "control-plane/front-door.js", {
    MERIDIAN_MESH: mesh.meshFile,
    MERIDIAN_CLIENT_REGIONS: "127.0.0.0/8=a",
    MERIDIAN_HEARTBEAT_INTERVAL_MS: "1000",
    MERIDIAN_FRONT_DOOR_READ_TIMEOUT_MS: String(READ_MS),
    MERIDIAN_FRONT_DOOR_WRITE_TIMEOUT_MS: String(WRITE_MS),
  });
  url = frontDoor.info.frontDoor!;
  await eventually(
    async () => {
      const h = (await (await fetch(`${url}/healthz`)).json()) as { regions: Array<{ up: boolean }> };
      return h.regions.every((r) => r.up);
    },
    30_000,
    50,
  );
});

/** A request through the front door, timed; aborted (an Error) well after the bound would have passed. */
async function timed(
  path: string,
  init: RequestInit = {},
): Promise<{ status: number; region: string | null; ms: number; body: string } | Error> {
  const started = Date.now();
  try {
    const res = await fetch(`${url}${path}`, { ...init, signal: AbortSignal.timeout(FINISHES_MS + 10_000) });
    const body = await res.text();
    return { status: res.status, region: res.headers.get("meridian-region"), ms: Date.now() - started, body };
  } catch (err) {
    return err as Error;
  }
}

test("reads fail over from a frozen region within the bound; writes answer 503 promptly", async () => {
  const a = mesh.regions.get("a")!;
  const b = mesh.regions.get("b")!;
  const image = await new OciClient(a.registry).pushRandomImage("team/app", "v1");
  const layer = image.layers[0]!.digest;
  // What b itself holds (only-if-cached), not what it could fetch on miss from a.
  const held = { method: "HEAD", headers: { "cache-control": "only-if-cached" } };
  await eventually(
    async () =>
      (await fetch(`${b.registry}/v2/team/app/blobs/${layer}`, held)).status === 200 &&
      (await fetch(`${b.registry}/v2/team/app/manifests/v1`, held)).status === 200,
    30_000,
    100,
  );
  // Warm a keep-alive connection to a (the front door's pool), as in a busy mesh.
  assert.equal(
    ((await timed("/v2/team/app/manifests/v1", { method: "HEAD" })) as { region: string }).region,
    "a",
  );

  // An upload session started on a before the freeze: it lives there, and is never moved.
  const session = await fetch(`${url}/v2/team/app/blobs/uploads/`, { method: "POST" });
  assert.equal(session.status, 202);
  const location = session.headers.get("location")!;
  assert.match(location, /_region=a/);

  const pid = a.node.child.pid!;
  cleanup(() => {
    try {
      process.kill(pid, "SIGCONT");
    } catch {
      // already gone
    }
  });
  process.kill(pid, "SIGSTOP");
  // All at once, before the probes can mark a down: each is routed to a (the client's region).
  const accept = { accept: OCI_MANIFEST };
  const [getManifest, headBlob, getBlob, putManifest, postUpload, patchSession] = await Promise.all([
    timed("/v2/team/app/manifests/v1", { headers: accept }),
    timed(`/v2/team/app/blobs/${layer}`, { method: "HEAD" }),
    timed(`/v2/team/app/blobs/${layer}`),
    timed("/v2/team/app/manifests/v2", {
      method: "PUT",
      headers: { "content-type": OCI_MANIFEST },
      body: JSON.stringify(image.manifest),
    }),
    timed("/v2/team/app/blobs/uploads/", { method: "POST" }),
    timed(location, {
      method: "PATCH",
      headers: { "content-type": "application/octet-stream", "content-range": "0-3" },
      body: "abcd",
    }),
  ]);
  for (const [name, r] of Object.entries({ getManifest, headBlob, getBlob })) {
    assert.ok(!(r instanceof Error), `${name} never finished: ${r}`);
    assert.equal(r.status, 200, `${name}: ${r.body}`);
    assert.equal(r.region, "b", `${name} answered by b`);
    assert.ok(r.ms < FINISHES_MS, `${name} took ${r.ms} ms`);
  }
  assert.ok(!(getManifest instanceof Error));
  assert.equal(JSON.parse(getManifest.body).config.digest, image.config.digest);
  assert.ok(!(putManifest instanceof Error), `the manifest PUT never finished: ${putManifest}`);
  assert.ok(putManifest.ms < FINISHES_MS, `the manifest PUT took ${putManifest.ms} ms`);
  // Sent to a: 503 promptly. On a loaded machine the front door's probes may have marked a down
  // before the request left (CI saw it once): then it went to b, and b took it.
  if (putManifest.region === "b") assert.equal(putManifest.status, 201, putManifest.body);
  else {
    assert.equal(putManifest.status, 503, putManifest.body);
    assert.equal(JSON.parse(putManifest.body).errors[0].code, "UNAVAILABLE");
    assert.match(JSON.parse(putManifest.body).errors[0].message, /region a did not answer/);
  }
  // A new upload session: refused promptly, or started on b if a was already marked down.
  assert.ok(!(postUpload instanceof Error), `the upload POST never finished: ${postUpload}`);
  assert.ok(postUpload.ms < FINISHES_MS, `the upload POST took ${postUpload.ms} ms`);
  if (postUpload.status === 503) assert.equal(JSON.parse(postUpload.body).errors[0].code, "UNAVAILABLE");
  else assert.deepEqual([postUpload.status, postUpload.region], [202, "b"], postUpload.body);
  assert.ok(!(patchSession instanceof Error), `the session's PATCH never finished: ${patchSession}`);
  assert.equal(patchSession.status, 503, patchSession.body);
  assert.ok(patchSession.ms < FINISHES_MS, `the session's PATCH took ${patchSession.ms} ms`);
  // Marked suspect: the next read goes straight to b (no second wait on a).
  const next = await timed("/v2/team/app/manifests/v1", { headers: accept });
  assert.ok(!(next instanceof Error));
  assert.equal(next.status, 200);
  assert.equal(next.region, "b");
  assert.ok(next.ms < READ_MS, `the next read took ${next.ms} ms`);
  process.kill(pid, "SIGCONT");
});
