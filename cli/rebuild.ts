/**
 * `meridian rebuild`: delete a node's metadata view and replay the region's
 * log into a fresh one. The node must be stopped (its view is locked while it
 * runs). Progress goes to stderr; the result is one JSON line on stdout.
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
import { rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { pino } from "pino";
import { loadTokenKeys } from "../node/auth/setup.js";
import { JetStreamLog } from "../node/data/jetstream-log.js";
import type { NatsClientConfig } from "../node/data/nats-connect.js";
import { MetadataView } from "../node/data/view.js";

export interface RebuildOptions {
  dataDir: string;
  region: string;
  nats: string;
  /** How to sign in to it (see the header). */
  natsClient?: NatsClientConfig;
  viewDir?: string;
  /** The mesh's token key (auth on): identity and policy events are checked with it. */
  tokenKeyFile?: string;
  retiredKeyFiles?: string[];
}

export async function rebuild(options: RebuildOptions): Promise<number> {
  const viewDir = resolve(options.viewDir ?? join(options.dataDir, options.region, "view"));
  const logger = pino({ level: "warn" }, pino.destination(2));
  const log = JetStreamLog.open({
    servers: [options.nats],
    region: options.region,
    name: "meridian-rebuild",
    nats: options.natsClient,
    logger,
  });
  const connectTimeout = setTimeout(() => {
    process.stderr.write(`rebuild: cannot reach NATS at ${options.nats}; still trying (Ctrl-C to stop)\n`);
  }, 5_000);
  await log.ready();
  clearTimeout(connectTimeout);
  const target = await log.lastSeq();
  await rm(viewDir, { recursive: true, force: true });
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
  let lastReport = 0;
  if (target > 0) {
    for await (const entry of log.tail(1, abort.signal)) {
      batch.push(entry);
      if (batch.length >= 1024 || entry.seq >= target) {
        await view.apply(batch);
        applied += batch.length;
        batch = [];
      }
      if (Date.now() - lastReport > 500 || entry.seq >= target) {
        lastReport = Date.now();
        const pct = Math.floor((100 * entry.seq) / target);
        process.stderr.write(`\rrebuild: ${entry.seq}/${target} events (${pct}%)`);
      }
      if (entry.seq >= target) break;
    }
    process.stderr.write("\n");
  }
  abort.abort();
  await view.close();
  await log.close();
  process.stdout.write(
    `${JSON.stringify({ rebuilt: true, region: options.region, view: viewDir, events: applied, ...(keys === undefined ? {} : { refused }), seq: target, ms: Date.now() - started })}\n`,
  );
  return 0;
}
