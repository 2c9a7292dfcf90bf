/**
 * The shared logger options (protocol/logging.ts) keep secrets out of log
 * lines at every depth they are listed for, in child loggers too, and leave
 * the other fields as they are.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { pino } from "pino";
import { loggerOptions, REDACT } from "../logging.js";

function capture(): { logger: pino.Logger; text: () => string } {
  let out = "";
  const logger = pino(loggerOptions("debug"), {
    write: (line: string) => {
      out += line;
    },
  });
  return { logger, text: () => out };
}

test("authorization headers, passwords, secrets, tokens and their hashes never reach the output", () => {
  const { logger, text } = capture();
  logger.info(
    {
      req: { method: "POST", url: "/auth/token", headers: { authorization: "Basic c2VjcmV0LWF1dGg=" } },
      body: { user: "alice", password: "hunter2-password" },
      user: { name: "alice", passwordHash: "$scrypt$hash-of-password" },
      robot: { name: "ci", secret: "robot-secret-value", secretHash: "hash-of-robot-secret" },
      token: "eyJ-bearer-token",
    },
    "login",
  );
  logger.child({ component: "auth" }).warn({ headers: { cookie: "session=cookie-secret" } }, "refused");
  const out = text();
  for (const secret of [
    "c2VjcmV0LWF1dGg=",
    "hunter2-password",
    "hash-of-password",
    "robot-secret-value",
    "hash-of-robot-secret",
    "eyJ-bearer-token",
    "cookie-secret",
  ])
    assert.ok(!out.includes(secret), `${secret} was logged: ${out}`);
  const [first, second] = out
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  assert.equal(first.req.headers.authorization, "[redacted]");
  assert.equal(first.body.password, "[redacted]");
  assert.equal(first.token, "[redacted]");
  // Everything else is kept.
  assert.equal(first.req.url, "/auth/token");
  assert.equal(first.body.user, "alice");
  assert.equal(first.robot.name, "ci");
  assert.equal(first.msg, "login");
  assert.equal(second.component, "auth");
  assert.equal(second.headers.cookie, "[redacted]");
});

test("a request's Authorization and Proxy-Authorization headers are redacted", () => {
  const { logger, text } = capture();
  logger.info({
    req: { headers: { authorization: "Bearer abc.def.ghi", "proxy-authorization": "Basic x" } },
  });
  assert.ok(!text().includes("abc.def.ghi"));
  assert.ok(!text().includes("Basic x"));
  assert.ok(REDACT.paths.includes("*.*.authorization"));
  assert.equal(REDACT.censor, "[redacted]");
});
