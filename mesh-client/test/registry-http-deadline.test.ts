/**
 * The answer deadline of mesh-client/registry-http.ts's `exchange` counts
 * from the end of the request: a streamed upload that takes longer than the
 * deadline to send (a large blob an import or a promotion pushes) is not cut
 * off, while an upload that goes silent is, by the idle bound, and an
 * answer that does not come after the body is, by the deadline.
 */
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { Readable } from "node:stream";
import { after, test } from "node:test";
import { cleanupStack } from "../../testing/harness.js";
import { ExternalRegistryError, exchange } from "../registry-http.js";

const cleanup = cleanupStack({ after });

async function server(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<URL> {
  const s = createServer(handler);
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  cleanup(
    () =>
      new Promise((r) => {
        s.closeAllConnections();
        s.close(() => r());
      }),
  );
  return new URL(`http://127.0.0.1:${(s.address() as { port: number }).port}/v2/x/blobs/uploads/1`);
}

/** A body of `chunks` chunks of 1 KiB, one every `everyMs`. */
function slowBody(chunks: number, everyMs: number): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent === chunks) return void this.push(null);
      sent++;
      setTimeout(() => this.push(Buffer.alloc(1024, 1)), everyMs);
    },
  });
}

test("a streamed body that takes longer than the deadline to send is answered", async () => {
  let received = 0;
  const url = await server((req, res) => {
    req.on("data", (c: Buffer) => {
      received += c.length;
    });
    req.on("end", () => {
      res.writeHead(201);
      res.end();
    });
  });
  const ex = await exchange(
    url,
    "PUT",
    { "content-length": 12 * 1024 },
    slowBody(12, 100),
    {
      deadlineMs: 400,
      idleMs: 2_000,
    },
    undefined,
  );
  ex.body.resume();
  assert.equal(ex.status, 201);
  assert.equal(received, 12 * 1024);
});

test("an upload that goes silent fails by the idle bound; a missing answer by the deadline", async () => {
  const url = await server((req, res) => {
    req.resume();
    req.on("end", () => setTimeout(() => res.writeHead(201).end(), 5_000).unref());
  });
  const silent = new Readable({ read() {} });
  silent.push(Buffer.alloc(10));
  const started = performance.now();
  await assert.rejects(
    exchange(url, "PUT", { "content-length": 1000 }, silent, { deadlineMs: 60_000, idleMs: 300 }, undefined),
    (e: ExternalRegistryError) =>
      e instanceof ExternalRegistryError && e.ociCode === "TIMEOUT" && /sending idle 300 ms/.test(e.message),
  );
  assert.ok(performance.now() - started < 30_000);
  await assert.rejects(
    exchange(
      url,
      "PUT",
      { "content-length": 2048 },
      slowBody(2, 10),
      { deadlineMs: 300, idleMs: 60_000 },
      undefined,
    ),
    (e: ExternalRegistryError) => e.ociCode === "TIMEOUT" && /no answer within 300 ms/.test(e.message),
  );
});
