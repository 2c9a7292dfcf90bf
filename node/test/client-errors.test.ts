/**
 * Requests Node's HTTP parser rejects before fastify sees them (issue 11,
 * finding 10): an oversized header or a malformed request line is answered
 * in the OCI error envelope, not fastify's own JSON shape.
 */
import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, test } from "node:test";
import { cleanupStack, startTestNats, startTestNode } from "../../testing/harness.js";

const cleanup = cleanupStack({ after });
let url: URL;

before(async () => {
  const nats = await startTestNats(cleanup);
  url = new URL((await startTestNode(cleanup, { nats: nats.url })).url);
});

/** Send raw bytes, return everything the server answers until it closes the connection. */
function raw(request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname);
    const chunks: Buffer[] = [];
    socket.on("data", (c) => chunks.push(c));
    socket.on("error", reject);
    socket.on("close", () => resolve(Buffer.concat(chunks).toString("utf8")));
    socket.setTimeout(10_000, () => socket.destroy());
    socket.end(request);
  });
}

function parse(answer: string): { status: number; headers: string; body: unknown } {
  const [head, body] = answer.split("\r\n\r\n", 2) as [string, string];
  return { status: Number(head.split(" ")[1]), headers: head.toLowerCase(), body: JSON.parse(body) };
}

test("an oversized header gets 431 in the OCI error format", async () => {
  const answer = parse(await raw(`GET /v2/ HTTP/1.1\r\nhost: x\r\nx-big: ${"a".repeat(64 << 10)}\r\n\r\n`));
  assert.equal(answer.status, 431);
  assert.match(answer.headers, /content-type: application\/json/);
  assert.deepEqual(answer.body, {
    errors: [{ code: "UNSUPPORTED", message: "request header fields too large", detail: null }],
  });
});

test("a malformed request gets 400 in the OCI error format", async () => {
  const answer = parse(await raw("NOT A REQUEST\r\n\r\n"));
  assert.equal(answer.status, 400);
  const errors = (answer.body as { errors: { code: string }[] }).errors;
  assert.equal(errors[0]!.code, "UNSUPPORTED");
});
