/**
 * Driving small-request load: `wrk` (one thread, --latency, a Lua `done`
 * hook that prints the summary as JSON) for GET, and loadgen.ts for HEAD,
 * which wrk cannot do. Both run as their own process. A point's `headers`
 * ("Name: value") go with every request, by either tool (`Accept`, and
 * `Authorization` in the auth suite).
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { LoadResult } from "./loadgen.js";

export type { LoadResult } from "./loadgen.js";
export type Tool = "wrk" | "loadgen";

const LOADGEN = join(dirname(fileURLToPath(import.meta.url)), "loadgen.js");

/** A Lua string literal (headers are printable ASCII: Accept, Authorization). */
const lua = (s: string) => `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;

function luaScript(method: string, headers: string[]): string {
  const lines = [`wrk.method = ${lua(method)}`];
  for (const h of headers) {
    const i = h.indexOf(":");
    lines.push(`wrk.headers[${lua(h.slice(0, i).trim())}] = ${lua(h.slice(i + 1).trim())}`);
  }
  lines.push(
    "done = function(summary, latency, requests)",
    "  local e = summary.errors",
    '  io.write(string.format(\'WRKJSON {"tool":"wrk","requests":%.0f,"duration_us":%.0f,"connect_errors":%.0f,' +
      '"read_errors":%.0f,"write_errors":%.0f,"status_errors":%.0f,"timeouts":%.0f,"p50_us":%.0f,"p90_us":%.0f,' +
      '"p99_us":%.0f,"max_us":%.0f,"mean_us":%.0f}\\n\',',
    "    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,",
    "    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))",
    "end",
    "",
  );
  return lines.join("\n");
}

export interface LoadPoint {
  url: string;
  method: "GET" | "HEAD";
  headers: string[];
  connections: number;
  durationSec: number;
  tool: Tool;
}

/** Run one load point in a child process and return its summary. */
export async function runLoadPoint(point: LoadPoint): Promise<LoadResult> {
  const dir = mkdtempSync(join(tmpdir(), "meridian-bench-load-"));
  try {
    let command: string;
    let args: string[];
    let marker: string;
    if (point.tool === "wrk") {
      if (point.method === "HEAD") throw new Error("wrk cannot measure HEAD (it waits for a body)");
      const script = join(dir, "report.lua");
      writeFileSync(script, luaScript(point.method, point.headers));
      command = "wrk";
      args = [
        "-t1",
        `-c${point.connections}`,
        `-d${Math.max(1, Math.round(point.durationSec))}s`,
        "--timeout",
        "5s",
        "--latency",
        "-s",
        script,
        point.url,
      ];
      marker = "WRKJSON ";
    } else {
      command = process.execPath;
      args = [
        LOADGEN,
        "--url",
        point.url,
        "--method",
        point.method,
        "--connections",
        String(point.connections),
        "--duration",
        String(point.durationSec),
        ...point.headers.flatMap((h) => ["--header", h]),
      ];
      marker = "LOADJSON ";
    }
    const { code, stdout, stderr } = await runChild(command, args, (point.durationSec + 30) * 1000);
    const line = stdout.split("\n").find((l) => l.startsWith(marker));
    if (code !== 0 || line === undefined) {
      throw new Error(`${command} failed (${code}): ${stderr.slice(-500)} ${stdout.slice(-500)}`);
    }
    return JSON.parse(line.slice(marker.length)) as LoadResult;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function runChild(
  command: string,
  args: string[],
  timeoutMs: number,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr = (stderr + d).slice(-4000);
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
