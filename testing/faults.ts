/**
 * Helpers for the fault tests (kill -9, NATS down, rebuild, `meridian up`):
 * HTTP requests whose body is sent by hand (so a
 * process can be killed while it is mid-stream), process liveness checks and
 * a block of free loopback ports.
 */
import { request } from "node:http";
import { createServer } from "node:net";

export interface ManualRequest {
  /** Send more of the body. */
  write(bytes: Uint8Array): Promise<void>;
  /** Finish the body. */
  end(): void;
  /** Settles with the status, or the transport error (e.g. the server was killed). */
  response: Promise<{ status: number; headers: Record<string, string | string[] | undefined> } | Error>;
}

/** Start a request and send its body only when told (Content-Length fixed up front if given). */
export function manualRequest(
  url: string,
  method: string,
  headers: Record<string, string | number>,
): ManualRequest {
  const req = request(url, { method, headers, agent: false });
  const response = new Promise<
    { status: number; headers: Record<string, string | string[] | undefined> } | Error
  >((resolve) => {
    req.once("response", (res) => {
      res.resume();
      res.once("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
      res.once("error", (err) => resolve(err));
    });
    req.once("error", (err) => resolve(err));
  });
  req.flushHeaders();
  return {
    write: (bytes) =>
      new Promise((resolve) => {
        // Errors surface through `response`; a write to a dead socket just resolves.
        req.write(bytes, () => resolve());
      }),
    end: () => req.end(),
    response,
  };
}

/** True while a process with this pid exists (signal 0 probes without sending anything). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw err;
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/**
 * A base port B in [low, high) such that every B + offset is free on 127.0.0.1
 * right now (e.g. offsets [0, 1, 10, 11] for `meridian up` with two regions).
 */
export async function freePortBlock(offsets: number[], low = 20_000, high = 60_000): Promise<number> {
  const span = Math.max(...offsets) + 1;
  for (let attempt = 0; attempt < 200; attempt++) {
    const base = low + Math.floor(Math.random() * (high - low - span));
    let ok = true;
    for (const offset of offsets) {
      if (!(await portFree(base + offset))) {
        ok = false;
        break;
      }
    }
    if (ok) return base;
  }
  throw new Error(`no free port block for offsets ${offsets.join(",")}`);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Wait until a node reports that it can take writes (its event log is connected). */
export async function waitWritable(url: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(`${url}/healthz`);
      if (res.status === 200 && ((await res.json()) as { writable?: boolean }).writable === true) return;
    } catch {
      // not answering yet
    }
    if (Date.now() > deadline) throw new Error(`${url} not writable within ${timeoutMs} ms`);
    await sleep(20);
  }
}

/** `promise`'s value, or "timeout" if it takes longer than `ms` (the timer never outlives it). */
export async function within<T>(promise: Promise<T>, ms: number): Promise<T | "timeout"> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
