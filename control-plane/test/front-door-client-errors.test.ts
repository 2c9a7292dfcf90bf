/**
 * Requests Node's HTTP parser rejects before the front door's handler sees
 * them (issue 11, finding 10): an oversized header, a malformed request line
 * and headers that never finish are answered in the OCI error envelope, as the
 * registry node answers them (protocol/oci-errors.ts), not with Node's
 * empty-bodied default. The front door runs as a real process; no region
 * needs to be up, the parser refuses before any routing.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { cleanupStack, freePort, spawnMeridian, tempDir } from "../../testing/harness.js";

const cleanup = cleanupStack({ after });
let url: URL;

before(async () => {
  const dir = tempDir(cleanup, "meridian-fd-client-errors-");
  const meshFile = join(dir, "mesh.json");
  const port = await freePort();
  writeFileSync(
    meshFile,
    JSON.stringify({
      regions: [
        {
          name: "a",
          registry: `http://127.0.0.1:${port}`,
          nats: `nats://127.0.0.1:${port}`,
          grpc: `127.0.0.1:${port}`,
        },
      ],
      insecure: true,
    }),
  );
  const frontDoor = await spawnMeridian(cleanup, "control-plane/front-door.js", {
    MERIDIAN_MESH: meshFile,
    MERIDIAN_HTTP_HEADERS_TIMEOUT_MS: "1000",
  });
  url = new URL(frontDoor.info.frontDoor!);
});

/** Send raw bytes (leaving the connection open when `keepOpen`), return all the server answers until it closes. */
function raw(request: string, keepOpen = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname);
    const chunks: Buffer[] = [];
    socket.on("data", (c) => chunks.push(c));
    socket.on("error", reject);
    socket.on("close", () => resolve(Buffer.concat(chunks).toString("utf8")));
    socket.setTimeout(10_000, () => socket.destroy());
    if (keepOpen) socket.write(request);
    else socket.end(request);
  });
}

function parse(answer: string): { status: number; headers: string; body: unknown } {
  const [head, body] = answer.split("\r\n\r\n", 2) as [string, string];
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    assert.fail(`the body is not JSON: ${JSON.stringify(answer)}`);
  }
  return { status: Number(head.split(" ")[1]), headers: head.toLowerCase(), body: parsed };
}

test("front door: an oversized header gets 431 in the OCI error format", async () => {
  const answer = parse(await raw(`GET /v2/ HTTP/1.1\r\nhost: x\r\nx-big: ${"a".repeat(64 << 10)}\r\n\r\n`));
  assert.equal(answer.status, 431);
  assert.match(answer.headers, /content-type: application\/json/);
  assert.match(answer.headers, /docker-distribution-api-version: registry\/2.0/);
  assert.deepEqual(answer.body, {
    errors: [{ code: "UNSUPPORTED", message: "request header fields too large", detail: null }],
  });
});

test("front door: a malformed request line gets 400 in the OCI error format", async () => {
  const answer = parse(await raw("NOT A REQUEST\r\n\r\n"));
  assert.equal(answer.status, 400);
  assert.match(answer.headers, /content-type: application\/json/);
  const errors = (answer.body as { errors: { code: string; message: string }[] }).errors;
  assert.equal(errors[0]!.code, "UNSUPPORTED");
  assert.equal(errors[0]!.message, "malformed HTTP request");
});

test("front door: headers that never finish get 408 in the OCI error format", async () => {
  const answer = parse(await raw("GET /v2/ HTTP/1.1\r\nhost: x\r\n", true));
  assert.equal(answer.status, 408);
  const errors = (answer.body as { errors: { code: string }[] }).errors;
  assert.equal(errors[0]!.code, "UNSUPPORTED");
});
