/**
 * A small closed-loop HTTP/1.1 load generator, for what `wrk` cannot do:
 * wrk 4.1's parser waits for a body after a HEAD response that carries a
 * Content-Length, so HEAD requests never complete. Like wrk: N keep-alive
 * connections, one request in flight on each, a fixed duration, latency of
 * every request. Run as its own process:
 *
 *   node dist/benchmarks/loadgen.js --url URL --method HEAD --connections 16 --duration 5
 *        [--header "Accept: …"]
 *
 * prints one JSON line (the same fields as the wrk script in load.ts).
 * Responses must carry Content-Length (or be HEAD); chunked bodies are refused.
 */
import { connect, type Socket } from "node:net";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

export interface LoadResult {
  tool: string;
  requests: number;
  duration_us: number;
  connect_errors: number;
  read_errors: number;
  write_errors: number;
  status_errors: number;
  timeouts: number;
  p50_us: number;
  p90_us: number;
  p99_us: number;
  max_us: number;
  mean_us: number;
}

export interface LoadOptions {
  url: string;
  method: string;
  connections: number;
  durationMs: number;
  headers: string[];
}

const HEADER_END = Buffer.from("\r\n\r\n");

export function runLoad(options: LoadOptions): Promise<LoadResult> {
  const url = new URL(options.url);
  const head = options.method === "HEAD";
  const request = Buffer.from(
    `${options.method} ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\n` +
      options.headers.map((h) => `${h}\r\n`).join("") +
      "\r\n",
    "latin1",
  );
  let latencies = new Float64Array(1 << 16);
  let count = 0;
  const errors = { connect: 0, read: 0, write: 0, status: 0, timeout: 0 };
  const open = new Set<Socket>();
  const start = performance.now();
  const end = start + options.durationMs;

  const record = (us: number) => {
    if (count === latencies.length) {
      const bigger = new Float64Array(latencies.length * 2);
      bigger.set(latencies);
      latencies = bigger;
    }
    latencies[count++] = us;
  };

  const runConnection = () =>
    new Promise<void>((resolve) => {
      let buffered: Buffer = Buffer.alloc(0);
      let sentAt = 0;
      let connected = false;
      const send = () => {
        sentAt = performance.now();
        socket.write(request);
      };
      const socket: Socket = connect(
        { host: url.hostname, port: Number(url.port || 80), noDelay: true },
        () => {
          connected = true;
          send();
        },
      );
      socket.on("error", () => {
        if (connected) errors.read++;
        else errors.connect++;
      });
      open.add(socket);
      socket.on("close", () => {
        open.delete(socket);
        resolve();
      });
      socket.on("data", (data: Buffer) => {
        buffered = buffered.length === 0 ? data : Buffer.concat([buffered, data]);
        // One response at a time is in flight, so at most one is complete here.
        const headerEnd = buffered.indexOf(HEADER_END);
        if (headerEnd < 0) return;
        const header = buffered.toString("latin1", 0, headerEnd);
        const status = Number(header.slice(9, 12));
        let bodyLength = 0;
        if (!head) {
          const m = /\r\ncontent-length:\s*(\d+)/i.exec(header);
          if (m === null) {
            errors.read++;
            socket.destroy();
            return;
          }
          bodyLength = Number(m[1]);
        }
        const total = headerEnd + 4 + bodyLength;
        if (buffered.length < total) return;
        buffered = buffered.subarray(total);
        const now = performance.now();
        record((now - sentAt) * 1000);
        if (status < 200 || status > 399) errors.status++;
        if (now < end) send();
        else socket.end();
      });
    });

  // A request still unanswered 3 s after the end is a timeout; its connection is dropped.
  const reaper = setTimeout(() => {
    for (const socket of open) {
      errors.timeout++;
      socket.destroy();
    }
  }, options.durationMs + 3000);
  return Promise.all(Array.from({ length: options.connections }, runConnection)).then(() => {
    clearTimeout(reaper);
    const elapsedUs = (performance.now() - start) * 1000;
    const sorted = latencies.subarray(0, count).sort();
    const pct = (p: number) =>
      count === 0 ? 0 : sorted[Math.min(count - 1, Math.ceil((p / 100) * count) - 1)]!;
    let sum = 0;
    for (let i = 0; i < count; i++) sum += sorted[i]!;
    return {
      tool: "loadgen",
      requests: count,
      duration_us: Math.round(elapsedUs),
      connect_errors: errors.connect,
      read_errors: errors.read,
      write_errors: errors.write,
      status_errors: errors.status,
      timeouts: errors.timeout,
      p50_us: Math.round(pct(50)),
      p90_us: Math.round(pct(90)),
      p99_us: Math.round(pct(99)),
      max_us: Math.round(count === 0 ? 0 : sorted[count - 1]!),
      mean_us: count === 0 ? 0 : Math.round(sum / count),
    };
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      url: { type: "string" },
      method: { type: "string", default: "GET" },
      connections: { type: "string", default: "1" },
      duration: { type: "string", default: "5" },
      header: { type: "string", multiple: true, default: [] },
    },
  });
  if (!values.url) throw new Error("--url is required");
  const result = await runLoad({
    url: values.url,
    method: values.method!,
    connections: Number(values.connections),
    durationMs: Number(values.duration) * 1000,
    headers: values.header ?? [],
  });
  process.stdout.write(`LOADJSON ${JSON.stringify(result)}\n`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    process.stderr.write(`loadgen failed: ${err?.stack ?? err}\n`);
    process.exit(1);
  });
}
