/**
 * The per-request logger made on first use (node/http/request-logger.ts):
 * nothing is made for a request that does not log, and what a request logs
 * carries its bindings and goes through the process logger's redaction.
 */
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { test } from "node:test";
import type { FastifyBaseLogger } from "fastify";
import pino from "pino";
import { loggerOptions } from "../../protocol/logging.js";
import { lazyRequestLogger } from "../http/request-logger.js";

function capture(): {
  logger: FastifyBaseLogger;
  lines: Array<Record<string, unknown>>;
  children: () => number;
} {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split("\n")) if (line !== "") lines.push(JSON.parse(line));
      done();
    },
  });
  let made = 0;
  const logger = pino({ ...loggerOptions("info"), onChild: () => made++ }, sink);
  return { logger, lines, children: () => made };
}

test("a request's logger is made only when the request logs, with its bindings and redaction", async () => {
  const { logger, lines, children } = capture();
  const quiet = lazyRequestLogger(logger, { reqId: "req-1" }, {});
  assert.equal(quiet.level, "info");
  assert.equal(children(), 0);
  const loud = lazyRequestLogger(logger, { reqId: "req-2" }, {});
  loud.warn({ authorization: "Bearer secret", n: 1 }, "request failed");
  loud.error("second");
  loud.debug("below the level");
  assert.equal(children(), 1);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(lines.length, 2);
  assert.equal(lines[0]?.reqId, "req-2");
  assert.equal(lines[0]?.msg, "request failed");
  assert.equal(lines[0]?.authorization, "[redacted]");
  assert.equal(lines[0]?.n, 1);
  assert.equal(lines[1]?.msg, "second");
  const grandchild = loud.child({ part: "x" });
  grandchild.info("nested");
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual([lines[2]?.reqId, lines[2]?.part], ["req-2", "x"]);
});
