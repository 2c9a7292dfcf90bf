/**
 * A real S3-protocol server for tests: `s3rver` (npm, 3.7; with
 * AbortMultipartUpload added by s3rver-main.ts) as a child process
 * on 127.0.0.1, an ephemeral port chosen by the server itself (it binds port
 * 0 and prints the one it got), its objects in a temporary directory. One
 * bucket per name in `buckets` is created at start. `stop()` kills the
 * process (by its pid) and removes the directory.
 *
 * s3rver accepts any access key with any secret signature-wise only for its
 * own default pair, so clients use `S3RVER_CREDENTIALS`.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const S3RVER_CREDENTIALS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" } as const;

export interface TestS3 {
  /** http://127.0.0.1:PORT */
  endpoint: string;
  pid: number;
  dir: string;
  multipartUploads(bucket: string): Promise<string[]>;
  stop(): Promise<void>;
}

export async function startTestS3(buckets: string[] = ["meridian"]): Promise<TestS3> {
  const dir = await mkdtemp(join(tmpdir(), "meridian-s3rver-"));
  const main = fileURLToPath(new URL("./s3rver-main.js", import.meta.url));
  const child = spawn(process.execPath, [main, dir, ...buckets], { stdio: ["ignore", "pipe", "pipe"] });
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await killChild(child);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const port = await new Promise<number>((resolve, reject) => {
      let out = "";
      let err = "";
      const timer = setTimeout(() => reject(new Error(`s3rver did not start in 15 s: ${out}${err}`)), 15_000);
      child.stdout?.on("data", (b: Buffer) => {
        out += b.toString();
        const m = /listening on [^:]+:(\d+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      });
      child.stderr?.on("data", (b: Buffer) => {
        err += b.toString();
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`s3rver exited with ${code}: ${out}${err}`));
      });
    });
    child.stdout?.resume();
    child.stderr?.resume();
    return {
      endpoint: `http://127.0.0.1:${port}`,
      pid: child.pid ?? 0,
      dir,
      multipartUploads: async (bucket) =>
        readdir(join(dir, bucket, "._S3rver_uploads")).catch(() => [] as string[]),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function killChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
  await exited;
  clearTimeout(timer);
}
