/**
 * A local S3-protocol server as a child process: `s3rver` (npm) with the
 * additions of ./s3-server-main.ts, bound to 127.0.0.1. `meridian up --s3`
 * runs one for the whole mesh (./up-s3.ts); the tests' testing/s3.ts runs
 * one per test file. Ready once it prints the port it listens on.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { fileURLToPath } from "node:url";

export interface S3ServerOptions {
  /** Where s3rver keeps buckets and objects. */
  dir: string;
  /** 0: any free port (the server prints the one it got). */
  port: number;
  /** Created at start when missing. */
  buckets: string[];
  /** {accessKeyId, secretAccessKey}: the only key pair it accepts (else s3rver's S3RVER/S3RVER). */
  credentialsFile?: string;
  /** Append the server's stdout/stderr here (else they are drained). */
  logFile?: string;
  /** Extra environment, e.g. MERIDIAN_PARENT_PID (exit once that parent is gone). */
  env?: Record<string, string>;
  /** In a process group of its own (as `up` starts every child: ./up-processes.ts). */
  detached?: boolean;
}

export interface S3ServerProcess {
  /** http://127.0.0.1:PORT */
  endpoint: string;
  pid: number;
  child: ChildProcess;
  /** SIGTERM, SIGKILL after 5 s; resolves once it has exited. */
  stop(): Promise<void>;
}

const MAIN = fileURLToPath(new URL("./s3-server-main.js", import.meta.url));
const READY_WITHIN_MS = 15_000;

export async function startS3Server(o: S3ServerOptions): Promise<S3ServerProcess> {
  const child = spawn(
    process.execPath,
    [MAIN, o.dir, String(o.port), o.credentialsFile ?? "-", ...o.buckets],
    {
      stdio: ["ignore", "pipe", "pipe"],
      detached: o.detached ?? false,
      env: { ...process.env, ...o.env },
    },
  );
  const stop = () => stopS3Server(child);
  const log = o.logFile === undefined ? undefined : createWriteStream(o.logFile, { flags: "a" });
  if (log !== undefined) {
    child.stdout!.pipe(log, { end: false });
    child.stderr!.pipe(log, { end: false });
  }
  try {
    const port = await new Promise<number>((resolve, reject) => {
      let out = "";
      const timer = setTimeout(() => {
        reject(
          new Error(`the S3 server did not start within ${READY_WITHIN_MS / 1000} s: ${out.slice(-2000)}`),
        );
      }, READY_WITHIN_MS);
      const onData = (b: Buffer) => {
        out = (out + b.toString()).slice(-8000);
        const m = /listening on [^:]+:(\d+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          child.off("exit", onExit);
          resolve(Number(m[1]));
        }
      };
      const onExit = (code: number | null, signal: string | null) => {
        clearTimeout(timer);
        reject(
          new Error(`the S3 server exited with ${code ?? signal} before listening: ${out.slice(-2000)}`),
        );
      };
      child.stdout!.on("data", onData);
      child.stderr!.on("data", (b: Buffer) => {
        out = (out + b.toString()).slice(-8000);
      });
      child.once("exit", onExit);
    });
    child.stdout!.resume();
    child.stderr!.resume();
    return { endpoint: `http://127.0.0.1:${port}`, pid: child.pid ?? 0, child, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

function stopS3Server(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill("SIGTERM");
  });
}
