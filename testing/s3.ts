/**
 * A real S3-protocol server for tests: the one `meridian up --s3` runs
 * (cli/s3-server.ts: `s3rver` 3.7 with AbortMultipartUpload and
 * read-after-write added) as a child process on 127.0.0.1, an ephemeral
 * port chosen by the server itself (it binds port 0 and prints the one it
 * got), its objects in a temporary directory. One bucket per name in
 * `buckets` is created at start. `stop()` kills the process (by its pid) and
 * removes the directory.
 *
 * Without a credentials file the server accepts s3rver's own key pair, so
 * clients use `S3RVER_CREDENTIALS`.
 */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startS3Server } from "../cli/s3-server.js";

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
  let server: Awaited<ReturnType<typeof startS3Server>>;
  try {
    server = await startS3Server({ dir, port: 0, buckets });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  let stopped = false;
  return {
    endpoint: server.endpoint,
    pid: server.pid,
    dir,
    multipartUploads: async (bucket) =>
      readdir(join(dir, bucket, "._S3rver_uploads")).catch(() => [] as string[]),
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
