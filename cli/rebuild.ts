/**
 * `meridian rebuild`: delete a node's metadata view and replay the region's
 * log into a fresh one. The node must be stopped: before anything is removed
 * the view's own lock (LevelDB's LOCK, held by a running node) is taken, and
 * a view a node holds is refused, naming the node's pid (its
 * <view>.lock, e.g. <data>/<region>/view.lock) - nothing is deleted then (issue 11, finding 7).
 * A view that does not open for another reason (corrupt) is removed whole.
 * Progress goes to stderr (cli/progress.ts: a bar with rate and time left on
 * a terminal, plain lines elsewhere), its last line ended by a newline; the
 * result is one JSON line on stdout.
 *
 * NATS credentials: the MERIDIAN_NATS_* settings (node/data/nats-connect.ts)
 * when any is set, else the operator seed `meridian up` keeps in
 * <data>/nats-auth/operator.seed when it exists, else anonymous.
 *
 * With authentication on (a token key: `--token-key`, by default
 * <data>/auth/token-key.pem when it exists) the replay checks identity and
 * policy events as the node does (protocol/event-authority.ts), with the
 * current key and every `--retired-key`, so a rebuild never admits an event
 * the running node refused.
 */
import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { Level } from "level";
import { pino } from "pino";
import { loadTokenKeys } from "../mesh-client/token-key-file.js";
import { JetStreamLog } from "../node/data/jetstream-log.js";
import type { NatsClientConfig } from "../node/data/nats-connect.js";
import { lockHolder } from "../node/data/pid-lock.js";
import { MetadataView } from "../node/data/view.js";
import { progress } from "./progress.js";

export interface RebuildOptions {
  dataDir: string;
  region: string;
  /** The region's NATS: one URL or its cluster's list. */
  nats: string | string[];
  /** How to sign in to it (see the header). */
  natsClient?: NatsClientConfig;
  viewDir?: string;
  /** The mesh's token key (auth on): identity and policy events are checked with it. */
  tokenKeyFile?: string;
  retiredKeyFiles?: string[];
}

/** The view is in use by a running node: nothing was touched. */
export class ViewInUseError extends Error {}

/**
 * Empty the view at `viewDir` holding its lock, so a running node's view is
 * never touched: a locked view throws ViewInUseError (naming the node's pid
 * when its <view>.lock says); one that does not open for another reason (a
 * corrupt view, what rebuild is for) is removed.
 */
async function clearView(viewDir: string, nodeLockFile: string): Promise<void> {
  if (!existsSync(viewDir)) return;
  const db = new Level<string, string>(viewDir);
  try {
    await db.open();
  } catch (err) {
    const e = err as { code?: string; cause?: { code?: string; message?: string }; message: string };
    const text = `${e.code} ${e.cause?.code} ${e.message} ${e.cause?.message}`;
    if (e.code === "LEVEL_LOCKED" || e.cause?.code === "LEVEL_LOCKED" || /lock/i.test(text)) {
      const pid = lockHolder(nodeLockFile);
      throw new ViewInUseError(
        `the view ${viewDir} is in use${pid === undefined ? " by a running node" : ` by the node with pid ${pid}`}; stop it first (nothing was changed)`,
      );
    }
    await rm(viewDir, { recursive: true, force: true });
    return;
  }
  try {
    await db.clear();
  } finally {
    await db.close();
  }
}

export async function rebuild(options: RebuildOptions): Promise<number> {
  const viewDir = resolve(options.viewDir ?? join(options.dataDir, options.region, "view"));
  const nodeLockFile = `${viewDir}.lock`;
  // Before connecting to anything: a view a node holds is refused at once.
  try {
    await clearView(viewDir, nodeLockFile);
  } catch (err) {
    if (!(err instanceof ViewInUseError)) throw err;
    process.stderr.write(
      `rebuild: ${err.message}\n  under 'meridian up': 'meridian region stop ${options.region} --only node', rebuild, then 'meridian region start ${options.region}'\n`,
    );
    return 1;
  }
  const logger = pino({ level: "warn" }, pino.destination(2));
  const log = JetStreamLog.open({
    servers: [options.nats].flat(),
    region: options.region,
    name: "meridian-rebuild",
    nats: options.natsClient,
    logger,
  });
  const connectTimeout = setTimeout(() => {
    process.stderr.write(
      `rebuild: cannot reach NATS at ${options.nats}; still trying (Ctrl-C to stop)\n` +
        "  is the region's nats-server running? 'meridian status' shows the regions; 'meridian up' (npm start) runs them\n",
    );
  }, 5_000);
  await log.ready();
  clearTimeout(connectTimeout);
  const target = await log.lastSeq();
  const keys =
    options.tokenKeyFile === undefined
      ? undefined
      : await loadTokenKeys({
          tokenKeyFile: options.tokenKeyFile,
          retiredKeyFiles: options.retiredKeyFiles ?? [],
          create: false,
        });
  const view = new MetadataView(
    viewDir,
    keys === undefined ? {} : { authority: { verify: (event) => keys.verifyEvent(event) } },
  );
  let refused = 0;
  view.onRefused = () => {
    refused++;
  };
  try {
    await view.open();
  } catch (err) {
    await log.close();
    throw new Error(`cannot open view at ${viewDir} (is the node still running?): ${(err as Error).message}`);
  }
  const started = Date.now();
  const abort = new AbortController();
  let applied = 0;
  let batch: Parameters<MetadataView["apply"]>[0] = [];
  // A bar with rate and time left on a terminal, plain lines elsewhere (cli/progress.ts).
  const shown = progress(`rebuild of ${options.region}`, target, { noun: "events" });
  try {
    if (target > 0) {
      for await (const entry of log.tail(1, abort.signal)) {
        batch.push(entry);
        if (batch.length >= 1024 || entry.seq >= target) {
          await view.apply(batch);
          applied += batch.length;
          batch = [];
          shown.update(entry.seq);
        }
        if (entry.seq >= target) break;
      }
    }
  } finally {
    // The progress line ends with a newline before the result or an error (issue 11, finding 10).
    shown.finish();
  }
  abort.abort();
  await view.close();
  await log.close();
  process.stdout.write(
    `${JSON.stringify({ rebuilt: true, region: options.region, view: viewDir, events: applied, ...(keys === undefined ? {} : { refused }), seq: target, ms: Date.now() - started })}\n`,
  );
  return 0;
}
