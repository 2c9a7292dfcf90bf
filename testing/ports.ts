/**
 * Free loopback ports for tests, safe when several test files run at once.
 *
 * A port found free with listen(0) and then closed is an ephemeral port: the
 * kernel may hand it to any outgoing connection (or another test file) before
 * the process meant to bind it does, and the test fails with EADDRINUSE. So
 * ports come from below the ephemeral range (Linux: 32768 and up), where
 * outgoing connections never land, and each one is reserved across processes
 * by a lock file holding the reserving pid. Reservations last for the life of
 * the process and are removed when it exits; a file left by a process that no
 * longer exists is taken over.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const LOW = 20_000;
const HIGH = 32_000;
const LOCKS = join(tmpdir(), "meridian-test-ports");
const held = new Set<number>();

process.once("exit", () => {
  for (const port of held) rmSync(join(LOCKS, String(port)), { force: true });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Take the cross-process lock on `port`, or say it is someone else's. */
function reserve(port: number): boolean {
  if (held.has(port)) return false;
  mkdirSync(LOCKS, { recursive: true });
  const file = join(LOCKS, String(port));
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, String(process.pid), { flag: "wx" });
      held.add(port);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const owner = Number(readFileSync(file, "utf8").trim() || "0");
      if (owner > 0 && alive(owner)) return false;
      rmSync(file, { force: true }); // stale: its process is gone
    }
  }
  return false;
}

function release(port: number): void {
  if (held.delete(port)) rmSync(join(LOCKS, String(port)), { force: true });
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/**
 * A base port B such that every B + offset is reserved for this process and
 * free on 127.0.0.1 now (e.g. offsets [0, 1, 10, 11] for `meridian up` with
 * two regions).
 */
export async function freePortBlock(offsets: number[]): Promise<number> {
  const span = Math.max(...offsets) + 1;
  for (let attempt = 0; attempt < 500; attempt++) {
    const base = LOW + Math.floor(Math.random() * (HIGH - LOW - span));
    const taken: number[] = [];
    let ok = true;
    for (const offset of offsets) {
      const port = base + offset;
      if (!reserve(port)) {
        ok = false;
        break;
      }
      taken.push(port);
      if (!(await bindable(port))) {
        ok = false;
        break;
      }
    }
    if (ok) return base;
    for (const port of taken) release(port);
  }
  throw new Error(`no free port block for offsets ${offsets.join(",")} in [${LOW}, ${HIGH})`);
}

/** One free loopback port, reserved for this process. */
export function freePort(): Promise<number> {
  return freePortBlock([0]);
}
