/**
 * The command lines of `meridian backup` and `meridian restore` (./backup.ts
 * does the work): which region, how to reach its NATS and its blob store,
 * and where the snapshot goes.
 *
 * The region is found one of two ways:
 * - `--config FILE` (a node's configuration file) or the node's
 *   `MERIDIAN_*` environment (MERIDIAN_REGION set): the node's own loader
 *   (node/config.ts) gives the region, its NATS servers and credentials and
 *   its blob store, filesystem or S3 — run it with the settings the
 *   region's nodes run with;
 * - otherwise the layout of `meridian up`: `--data DIR` (default
 *   .meridian), `--region` (default the first region of DIR/mesh.json),
 *   NATS from DIR/mesh.json (or `--nats`), signing in with DIR's operator
 *   seed, the store in DIR/REGION/store (or `--store`); with `--s3` (a mesh
 *   that `up --s3` runs) the region's bucket on up's S3 server instead, at
 *   the port `--base-port` (default 5000) puts it, with DIR/s3's key pair.
 *   A filesystem store directory that does not exist is refused rather than
 *   backed up as "every blob missing".
 *
 * An `s3://` target is reached with `--s3-endpoint`, `--s3-region`,
 * `--s3-credentials-file` and `--s3-path-style`; when the region's own store
 * is on S3 and no `--s3-endpoint` is given, with the store's settings.
 */
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { loadNodeConfig } from "../node/config.js";
import type { NatsClientConfig } from "../node/data/nats-connect.js";
import { natsServersOf, parseMesh, regionOf } from "../protocol/mesh.js";
import { backup, RefusedError, type RegionAccess, restore } from "./backup.js";
import type { TargetS3Settings } from "./backup-target.js";
import { mib } from "./progress.js";
import { bucketOf, s3Port } from "./up-s3.js";

export const BACKUP_USAGE = `  backup    write a consistent snapshot of a region (its log and the blobs it names) to DIR or S3,
            incrementally by digest; the region keeps serving
              --to DIR|s3://BUCKET[/PREFIX]   where (a directory is made private, 0700)
              --config FILE     a node's configuration (else the node's MERIDIAN_* environment
                                when MERIDIAN_REGION is set, else the layout of 'up':)
              --data DIR        data directory of 'up' (default .meridian)
              --region NAME     region (default: the first in DIR/mesh.json)
              --nats URL        the region's NATS (default: from DIR/mesh.json)
              --store DIR       the region's filesystem store (default DIR/REGION/store)
              --s3              the mesh runs with 'up --s3': the region's bucket on up's S3 server
              --base-port N     as for 'up', to find that server (default 5000)
              --s3-endpoint URL --s3-region R --s3-credentials-file F --s3-path-style
                                how to reach an s3:// target (default: the region's S3 store's)
  restore   bring a wiped region (empty log) back to a snapshot: blobs first, then the events in order;
            a restore cut short is finished by running it again
              --from DIR|s3://BUCKET[/PREFIX]   the snapshot
              (and the options of 'backup' that find the region and an S3 target)
`;

export async function backupCommand(
  command: "backup" | "restore",
  args: string[],
  operatorNatsClient: (dataDir: string) => NatsClientConfig | undefined,
): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      to: { type: "string" },
      from: { type: "string" },
      config: { type: "string" },
      data: { type: "string", default: ".meridian" },
      region: { type: "string" },
      nats: { type: "string" },
      store: { type: "string" },
      s3: { type: "boolean", default: false },
      "base-port": { type: "string", default: "5000" },
      "s3-endpoint": { type: "string" },
      "s3-region": { type: "string" },
      "s3-credentials-file": { type: "string" },
      "s3-path-style": { type: "boolean", default: false },
    },
  });
  const where = command === "backup" ? values.to : values.from;
  if (where === undefined) {
    process.stderr.write(`meridian ${command}: --${command === "backup" ? "to" : "from"} is required\n`);
    return 2;
  }
  const access = regionAccess(values, operatorNatsClient);
  const targetS3: TargetS3Settings =
    values["s3-endpoint"] !== undefined
      ? {
          endpoint: values["s3-endpoint"],
          region: values["s3-region"] ?? "us-east-1",
          credentialsFile: values["s3-credentials-file"] && resolve(values["s3-credentials-file"]),
          forcePathStyle: values["s3-path-style"],
        }
      : (access.store.s3 ?? {});
  const started = performance.now();
  const seconds = () => ((performance.now() - started) / 1000).toFixed(1);
  try {
    if (command === "backup") {
      const r = await backup({ ...access, to: where, targetS3 });
      process.stdout.write(
        `backup of ${r.region}: ${r.events} events up to seq ${r.lastSeq}, ${r.blobs} blobs (${mib(r.bytes)} MiB, ${r.newBlobs} new) in ${seconds()} s to ${where}\n`,
      );
      for (const d of r.skipped) process.stdout.write(`skipped ${d}: no longer in the region's store\n`);
      return 0;
    }
    const r = await restore({ ...access, from: where, targetS3 });
    process.stdout.write(
      `restore of ${access.region}: ${r.appended} events appended (${r.events} in the snapshot${r.resumedAt > 0 ? `, ${r.resumedAt} already there` : ""}), log at seq ${r.lastSeq}; ${r.blobs} blobs (${mib(r.bytes)} MiB, ${r.copied} copied) in ${seconds()} s\n`,
    );
    return 0;
  } catch (err) {
    if (err instanceof RefusedError) {
      process.stderr.write(`meridian ${command}: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

function regionAccess(
  values: {
    config?: string;
    data: string;
    region?: string;
    nats?: string;
    store?: string;
    s3: boolean;
    "base-port": string;
  },
  operatorNatsClient: (dataDir: string) => NatsClientConfig | undefined,
): RegionAccess {
  if (values.config !== undefined || process.env.MERIDIAN_REGION !== undefined) {
    const config = loadNodeConfig({ file: values.config, env: process.env });
    const { servers, ...client } = config.nats;
    return {
      region: values.region ?? config.region,
      nats: values.nats ?? servers,
      natsClient: client as NatsClientConfig,
      store:
        values.store === undefined
          ? config.storage
          : { type: "fs", root: resolve(values.store), fsync: true },
    };
  }
  const meshFile = join(values.data, "mesh.json");
  const mesh = existsSync(meshFile) ? parseMesh(JSON.parse(readFileSync(meshFile, "utf8"))) : undefined;
  const region = values.region ?? mesh?.regions[0]?.name ?? "local";
  const nats = values.nats ?? (mesh ? natsServersOf(regionOf(mesh, region)) : undefined);
  if (nats === undefined) throw new Error(`no mesh file at ${meshFile}: give --nats URL (or --config FILE)`);
  const root = resolve(values.store ?? join(values.data, region, "store"));
  if (values.s3) {
    const base = Number(values["base-port"]);
    if (!Number.isInteger(base) || base < 1 || base > 65000)
      throw new Error(`invalid port: ${values["base-port"]}`);
    return {
      region,
      nats,
      natsClient: operatorNatsClient(values.data),
      store: {
        type: "s3",
        root,
        fsync: true,
        s3: {
          bucket: bucketOf(region),
          endpoint: `http://127.0.0.1:${s3Port(base, mesh?.regions.length ?? 1)}`,
          forcePathStyle: true,
          region: "us-east-1",
          credentialsFile: resolve(values.data, "s3", "credentials.json"),
        },
      },
    };
  }
  if (!existsSync(root))
    throw new Error(
      `no filesystem store at ${root} (a mesh of 'up --s3'? add --s3; elsewhere --config FILE)`,
    );
  return {
    region,
    nats,
    natsClient: operatorNatsClient(values.data),
    store: { type: "fs", root, fsync: true },
  };
}
