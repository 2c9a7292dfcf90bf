/**
 * Reading the audit log (./audit.ts): `queryAudit` answers the newest
 * `limit` matching records, ordered by their `at`, oldest first. It reads
 * the stream backwards in windows, from the last message stored five
 * minutes after `until` (or the last the stream held when the query began)
 * down to the first stored at `since` less a minute (clock skew between
 * node and NATS server), filtering on the record's own fields, and stops
 * once it has `limit` matches.
 */
import {
  type ConsumerMessages,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
} from "@nats-io/jetstream";
import type { Logger } from "pino";
import { LogUnavailableError } from "../protocol/errors.js";
import { type AuditQuery, type AuditRecord, DEFAULT_AUDIT_LIMIT, MAX_AUDIT_LIMIT } from "./audit-records.js";

/** Clock difference tolerated between a node (`at`) and its NATS server (stream time). */
const CLOCK_SKEW_MS = 60_000;
/** How long after `until` a query keeps reading, for records stored late (buffered, or skewed clocks). */
const UNTIL_GRACE_MS = 5 * 60_000;
/** A query stops if the consumer delivers nothing for this long (the end of the stream was trimmed away). */
const QUERY_IDLE_MS = 3_000;

/**
 * The newest records matching `q` (at most `q.limit`), returned oldest
 * first. Fails with LogUnavailableError when NATS cannot be reached, or
 * when `signal` aborts.
 *
 * The stream is read backwards in windows of sequences (each window read
 * forwards, the next one before it and twice as wide) from the last
 * message stored by `until` (plus grace) down to the first stored from
 * `since` (less the clock skew), stopping once `limit` matches are found:
 * `--limit 20` costs about the newest records, however long the log is.
 */
export async function queryAudit(
  js: JetStreamClient,
  jsm: JetStreamManager,
  stream: string,
  q: AuditQuery,
  log: Logger,
  signal?: AbortSignal,
): Promise<AuditRecord[]> {
  const limit = Math.min(Math.max(Math.trunc(q.limit ?? DEFAULT_AUDIT_LIMIT), 0), MAX_AUDIT_LIMIT);
  if (limit === 0) return [];
  const since = q.since?.getTime();
  const until = q.until?.getTime();
  let lower: number;
  let upper: number;
  try {
    const { state } = await jsm.streams.info(stream);
    if (state.messages === 0) return [];
    if (since !== undefined && Date.parse(state.last_ts) < since - CLOCK_SKEW_MS) return [];
    if (until !== undefined && Date.parse(state.first_ts) > until + UNTIL_GRACE_MS) return [];
    lower = state.first_seq;
    upper = state.last_seq;
    if (since !== undefined) lower = (await seqAt(js, stream, since - CLOCK_SKEW_MS)) ?? upper + 1;
    if (until !== undefined) {
      const after = await seqAt(js, stream, until + UNTIL_GRACE_MS + 1);
      if (after !== undefined) upper = Math.min(upper, after - 1);
    }
  } catch (err) {
    throw new LogUnavailableError("audit log unavailable", { cause: err });
  }

  // Windows newest first; within each, records in store order.
  const windows: AuditRecord[][] = [];
  let count = 0;
  let width = Math.max(limit, 256);
  for (let end = upper; end >= lower && count < limit; end -= width, width *= 2) {
    const from = Math.max(lower, end - width + 1);
    const window: AuditRecord[] = [];
    await readRange(js, stream, log, from, end, signal, (record) => {
      if (matches(record, q, since, until)) window.push(record);
    });
    windows.push(window);
    count += window.length;
    width = end - from + 1; // doubled by the loop for the next window
  }
  const found = windows.reverse().flat();
  // Stream order is store order; a record buffered through an outage is stored after later ones.
  found.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
  return found.slice(Math.max(0, found.length - limit));
}

/** The sequence of the first message stored at or after `time`; undefined when none is. */
async function seqAt(js: JetStreamClient, stream: string, time: number): Promise<number | undefined> {
  const consumer = await js.consumers.get(stream, {
    deliver_policy: DeliverPolicy.StartTime,
    opt_start_time: new Date(time).toISOString(),
  });
  try {
    const m = await consumer.next({ expires: QUERY_IDLE_MS });
    return m?.seq ?? undefined;
  } finally {
    await consumer.delete().catch(() => undefined);
  }
}

/** Read the stream's messages `from`..`to` (sequences) in order, each valid record to `visit`. */
async function readRange(
  js: JetStreamClient,
  stream: string,
  log: Logger,
  from: number,
  to: number,
  signal: AbortSignal | undefined,
  visit: (record: AuditRecord) => void,
): Promise<void> {
  let messages: ConsumerMessages;
  try {
    const consumer = await js.consumers.get(stream, {
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: from,
    });
    messages = await consumer.consume({ max_messages: Math.min(1024, Math.max(to - from + 1, 64)) });
  } catch (err) {
    throw new LogUnavailableError("audit log unavailable", { cause: err });
  }
  let idle: NodeJS.Timeout | undefined;
  const stop = () => void messages.stop();
  const armIdle = () => {
    clearTimeout(idle);
    idle = setTimeout(() => {
      log.warn({ from, to }, "audit query ended idle");
      stop();
    }, QUERY_IDLE_MS);
  };
  signal?.addEventListener("abort", stop, { once: true });
  armIdle();
  try {
    for await (const m of messages) {
      armIdle();
      if (m.seq > to) break;
      for (const record of decodeBatch(m.data)) {
        if (record === undefined) log.warn({ seq: m.seq }, "audit record invalid");
        else visit(record);
      }
      if (m.seq >= to || m.info.pending === 0) break;
    }
  } catch (err) {
    if (!signal?.aborted) throw new LogUnavailableError("audit log unavailable", { cause: err });
  } finally {
    clearTimeout(idle);
    signal?.removeEventListener("abort", stop);
    stop();
  }
  if (signal?.aborted) throw new LogUnavailableError("audit query cancelled", { cause: signal.reason });
}

function matches(r: AuditRecord, q: AuditQuery, since?: number, until?: number): boolean {
  if (q.actor !== undefined && r.actor !== q.actor) return false;
  if (q.action !== undefined && r.action !== q.action) return false;
  if (q.repo !== undefined && r.repo !== q.repo) return false;
  if (since === undefined && until === undefined) return true;
  const at = Date.parse(r.at);
  return (since === undefined || at >= since) && (until === undefined || at <= until);
}

/** The records of one stored batch (one JSON record per line); undefined for a line that is not one. */
function decodeBatch(data: Uint8Array): Array<AuditRecord | undefined> {
  return Buffer.from(data).toString("utf8").split("\n").map(decodeRecord);
}

function decodeRecord(line: string): AuditRecord | undefined {
  try {
    const value = JSON.parse(line) as AuditRecord;
    if (typeof value !== "object" || value === null || typeof value.at !== "string") return undefined;
    return value;
  } catch {
    return undefined;
  }
}
