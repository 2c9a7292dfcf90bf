/**
 * node/lifecycle.ts, the start/stop code every entry point shares (issue 12,
 * item 6): each case runs a small process that serves through it, and signals
 * it as a supervisor would. The close of that process's "service" is made slow
 * or hanging on purpose, which the real services cannot be made to do on demand.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, test } from "node:test";
import { pathToFileURL } from "node:url";
import { cleanupStack, REPO_ROOT } from "../../testing/harness.js";

const cleanup = cleanupStack({ after });
const LIFECYCLE = pathToFileURL(join(REPO_ROOT, "dist", "node", "lifecycle.js")).href;
const PARENT_WATCH = pathToFileURL(join(REPO_ROOT, "dist", "node", "parent-watch.js")).href;

interface Served {
  child: ChildProcess;
  /** The listening line, parsed. */
  listening: Record<string, unknown>;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * A process that serves through serveUntilStopped (or, with `bound`, through
 * handleStopSignals with that grace): its close logs "closing", then takes
 * `closeMs` (never finishes with `closeMs: "never"`).
 */
async function serve(options: {
  closeMs: number | "never";
  bound?: number;
  env?: Record<string, string>;
  /** Extra code run once serving (e.g. an uncaught error). */
  afterServing?: string;
  /** Start the parent watch before serving too, as node/server.ts does. */
  watchEarly?: boolean;
}): Promise<Served> {
  const close =
    options.closeMs === "never"
      ? `() => { logger.info({}, "closing"); return new Promise(() => {}); }`
      : `() => { logger.info({}, "closing"); return new Promise((r) => setTimeout(r, ${options.closeMs})); }`;
  const script = `
    import { pino } from "pino";
    import { handleStopSignals, serveUntilStopped } from ${JSON.stringify(LIFECYCLE)};
    import { exitWithParent } from ${JSON.stringify(PARENT_WATCH)};
    const logger = pino({ base: undefined }, pino.destination(2));
    const service = { close: ${close} };
    // Watched early, then a start that takes a while (the two watches then tick apart).
    ${options.watchEarly === true ? "exitWithParent(); await new Promise((r) => setTimeout(r, 200));" : ""}
    setInterval(() => {}, 1000); // a server's handles keep it running
    ${
      options.bound === undefined
        ? `serveUntilStopped(service, { name: "toy", logger, listening: { toy: true },
             reloadTls: () => logger.info({}, "reloading") });`
        : `handleStopSignals({ logger, graceMs: ${options.bound}, hangup: () => {}, stop: () => service.close() });
           process.stdout.write(JSON.stringify({ event: "listening" }) + "\\n");`
    }
    ${options.afterServing ?? ""}
  `;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
    cwd: REPO_ROOT,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...options.env },
  });
  cleanup(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  let stderr = "";
  child.stderr!.on("data", (d) => {
    stderr += d;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const listening = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.once("line", (line) => resolve(JSON.parse(line)));
    child.once("exit", (code) => reject(new Error(`exited with ${code} before listening:\n${stderr}`)));
  });
  return { child, listening, stderr: () => stderr, exited };
}

async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

async function logged(s: Served, msg: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!s.stderr().includes(msg)) {
    if (Date.now() > deadline) assert.fail(`"${msg}" never logged:\n${s.stderr()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test("SIGTERM at once after the listening line: a graceful stop, exit 0", async () => {
  const s = await serve({ closeMs: 200 });
  assert.equal(s.listening.event, "listening");
  assert.equal(s.listening.toy, true);
  assert.equal(s.listening.pid, s.child.pid);
  s.child.kill("SIGTERM"); // the handlers are in place before the line is written
  assert.deepEqual(await within(s.exited, 10_000, "stop"), { code: 0, signal: null });
  assert.match(s.stderr(), /"signal":"SIGTERM".*"toy stopping"/);
  assert.match(s.stderr(), /closing/);
});

test("a second signal while stopping exits 1 at once", async () => {
  const s = await serve({ closeMs: "never" });
  s.child.kill("SIGINT");
  await logged(s, "closing");
  s.child.kill("SIGTERM");
  assert.deepEqual(await within(s.exited, 5_000, "forced exit"), { code: 1, signal: null });
  assert.match(s.stderr(), /second signal while stopping/);
});

test("a stop that hangs is cut after its bound, exit 1", async () => {
  const s = await serve({ closeMs: "never", bound: 300 });
  s.child.kill("SIGTERM");
  assert.deepEqual(await within(s.exited, 5_000, "bounded stop"), { code: 1, signal: null });
  assert.match(s.stderr(), /stop did not finish in time/);
});

test("SIGHUP runs the reload hook and stops nothing", async () => {
  const s = await serve({ closeMs: 0 });
  s.child.kill("SIGHUP");
  await logged(s, "tls certificate reloaded");
  assert.equal(s.child.exitCode, null);
  assert.ok(!s.stderr().includes("closing"));
  s.child.kill("SIGTERM");
  assert.deepEqual(await within(s.exited, 10_000, "stop"), { code: 0, signal: null });
});

test("an uncaught error is logged, the service closed, exit 1", async () => {
  const s = await serve({ closeMs: 0, afterServing: `setTimeout(() => { throw new Error("boom"); }, 50);` });
  assert.deepEqual(await within(s.exited, 10_000, "stop"), { code: 1, signal: null });
  assert.match(s.stderr(), /"level":60.*boom.*uncaught error: stopping/s);
  assert.match(s.stderr(), /closing/);
});

test("the parent gone: one graceful stop, exit 0, also when watched from the start", async () => {
  // MERIDIAN_PARENT_PID names a process that is not the parent: as if `meridian up` had died.
  for (const watchEarly of [false, true]) {
    const s = await serve({ closeMs: 300, env: { MERIDIAN_PARENT_PID: "2" }, watchEarly });
    assert.deepEqual(await within(s.exited, 10_000, "stop"), { code: 0, signal: null }, s.stderr());
    assert.match(s.stderr(), /"signal":"SIGTERM".*"toy stopping"/);
  }
});
