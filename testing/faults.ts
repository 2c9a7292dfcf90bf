/**
 * Helpers for the fault tests (kill -9, NATS down, rebuild, `meridian up`):
 * HTTP requests whose body is sent by hand (so a
 * process can be killed while it is mid-stream) and process liveness checks.
 * Free ports are in ports.ts.
 */
import { request } from "node:http";

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
