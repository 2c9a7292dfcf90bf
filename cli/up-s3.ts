/**
 * `meridian up --s3` (issue 13, item 7): one local S3-protocol server for the
 * whole mesh (./s3-server.ts, s3rver), supervised like every other process
 * (./supervisor.ts, role `s3`), on 127.0.0.1 at B+10R+9 (up.ts's header has
 * the layout). Files under <data>/s3/ (0700):
 *
 *   <data>/s3/credentials.json   {accessKeyId, secretAccessKey}: made once (0600),
 *                                the only key pair the server accepts; every
 *                                region's processes read it (storage.s3.credentialsFile)
 *   <data>/s3/data/              s3rver's buckets and objects, kept across restarts
 *   <data>/s3/s3.log             the server's output
 *
 * One bucket per region, `meridian-<region>` (region names are valid bucket
 * names: lower-case letters, digits, dashes), created at start when missing.
 * A region's node(s), peer and worker all get storage.type=s3 and that
 * bucket through MERIDIAN_* overrides (protocol/config-schema.ts
 * CommonSettings.storageType/.s3; the same store in every process of a
 * region, node/data/open-blob-store.ts).
 *
 * Nothing migrates: a data directory that ran on the filesystem store keeps
 * its blobs in <data>/<region>/store, which an --s3 start does not read (its
 * view names blobs the bucket lacks), and the other way round.
 */
import { randomBytes } from "node:crypto";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { privateDirs } from "../node/data/private-files.js";
import { startS3Server } from "./s3-server.js";
import { httpAnswers, LIVENESS, type Supervised } from "./supervisor.js";
import type { Supervise } from "./up-region.js";

/** The S3 server's port: the last of region 0's second block (up.ts's header). Pure. */
export function s3Port(basePort: number, regionCount: number): number {
  return basePort + 10 * regionCount + 9;
}

/** Region `region`'s bucket. Pure. */
export function bucketOf(region: string): string {
  return `meridian-${region}`;
}

export interface UpS3 {
  server: Supervised;
  /** http://127.0.0.1:PORT */
  endpoint: string;
  /** The storage settings of region `region`'s processes. */
  env(region: string): Record<string, string>;
}

/** Start the mesh's S3 server (its first start; failures throw, as for every first start). */
export async function startUpS3(
  dataDir: string,
  port: number,
  regions: string[],
  supervise: Supervise,
): Promise<UpS3> {
  const dir = join(dataDir, "s3");
  privateDirs([dir, join(dir, "data")]);
  const credentialsFile = join(dir, "credentials.json");
  if (!existsSync(credentialsFile)) {
    const credentials = {
      accessKeyId: `MERIDIAN${randomBytes(6).toString("hex").toUpperCase()}`,
      secretAccessKey: randomBytes(30).toString("base64url"),
    };
    writeFileSync(credentialsFile, `${JSON.stringify(credentials, null, 2)}\n`, { mode: 0o600, flag: "wx" });
  }
  const logFile = join(dir, "s3.log");
  const endpoint = `http://127.0.0.1:${port}`;
  // Frozen (SIGSTOP) it would hang every region's blobs until the nodes' S3 timeouts: probed like
  // the Meridian processes, any HTTP answer (s3rver's 403 to an unsigned GET) counting as alive.
  const probe =
    process.env.MERIDIAN_UP_LIVENESS === "off"
      ? undefined
      : () => httpAnswers(`${endpoint}/`, LIVENESS.timeoutMs);
  const server = supervise("S3 server", "s3", logFile, async () => {
    const s = await startS3Server({
      dir: join(dir, "data"),
      port,
      buckets: regions.map(bucketOf),
      credentialsFile,
      logFile,
      // It exits once `up` is gone, even by SIGKILL (node/parent-watch.ts).
      env: { MERIDIAN_PARENT_PID: String(process.pid) },
      detached: true,
    });
    return { child: s.child, stop: s.stop, probe };
  });
  await server.start();
  return {
    server,
    endpoint,
    env: (region) => ({
      MERIDIAN_STORAGE_TYPE: "s3",
      MERIDIAN_S3_BUCKET: bucketOf(region),
      MERIDIAN_S3_ENDPOINT: endpoint,
      MERIDIAN_S3_FORCE_PATH_STYLE: "true",
      MERIDIAN_S3_CREDENTIALS_FILE: credentialsFile,
    }),
  };
}
