/**
 * The audit log (issue 6): who pushed, pulled, deleted, logged in (or failed
 * to) and changed admin objects, from where and when, kept per region and
 * queryable through the admin API (`GET /admin/v1/audit`) and `meridian audit`.
 *
 * Storage: one JetStream stream per region, `AUDIT_<region>` (region names
 * are valid stream names as they are), on the single subject
 * `meridian-audit.<region>`, in the region's own NATS. File storage, limits
 * retention: records older than `maxAgeDays` (default 90) or beyond
 * `maxBytes` (default 1 GiB, oldest first) are discarded by the server. The
 * stream is never sourced or mirrored by another region: each region's log is
 * queried on its own and `meridian audit` merges them. The subject is not
 * under `meridian.<region>.` on purpose: a region named "audit" owns
 * `meridian.audit.>` for its event stream, and JetStream refuses streams
 * whose subjects overlap. `open` creates the stream, or updates the limits
 * of one that exists (another node of the region may have created it); it
 * waits for NATS at most `waitMs` (5 s), then returns and keeps connecting
 * in the background, so a node starts while its NATS is down.
 *
 * Writing: `record` never waits on NATS and never throws. It stamps the time,
 * serializes the record and appends it to an in-memory buffer; a background
 * flusher publishes what is buffered as one message per batch (up to
 * BATCH records, one JSON record per line) with a JetStream ack. A batch
 * keeps its message id until it is stored, so one re-sent after a lost ack
 * is de-duplicated by the server. A record is therefore durable once the
 * flusher got its batch's ack, within FLUSH_DELAY_MS (50 ms) and a round trip. (One
 * publish per record cost about a tenth of a node's CPU under a pull load:
 * each acknowledged publish builds error objects for its stack.)
 *
 * While NATS is unreachable (or the stream cannot be written) records stay
 * buffered, up to `maxBuffered` (default 10 000); records beyond that are
 * dropped, counted in `dropped` and in `meridian_audit_records_dropped_total`,
 * and logged once per outage. When the connection comes back the stream is
 * checked again and the buffer drains in order. A record the server rejects
 * outright (not a timeout or a disconnect) is dropped and counted after a few
 * attempts so it cannot hold the rest back. Buffered records are lost if the
 * process dies; `close` waits (boundedly) for the buffer to drain.
 *
 * Floods (issue 10, finding 7): every client-controlled field is cut to a
 * bounded length (actor, repo, reference 256 characters, address 64,
 * detail 1024), and `login.failed` records pass ./audit-throttle.ts: per
 * address and overall, only the first few of a window are recorded one by
 * one, the rest as one aggregate record per address (`count`), logins
 * refused by the limiter (429) only in aggregates. A flood is counted in
 * `meridian_audit_login_failures_suppressed_total`, logged, and reported to
 * `onFlood` (the node raises an `alert.raised` event). Retention is by age,
 * by bytes AND by message count (`maxMessages`), oldest discarded first, and
 * one message (a batch) is at most MAX_MESSAGE_BYTES.
 *
 * Reading: `query` answers the newest `limit` matching records (what
 * `meridian audit --limit N` users expect), ordered by their `at`, oldest
 * first. It reads the stream backwards in windows, from the last message
 * stored five minutes after `until` (or the last the stream held when the
 * query began) down to the first stored at `since` less a minute (clock skew
 * between node and NATS server), filtering on the record's own fields, and
 * stops once it has `limit` matches. A record buffered through a longer
 * outage is stored later than that and is seen by queries whose `until` is
 * later (or absent).
 *
 * Files: this one (writing, the connection through data/nats-connection.ts),
 * ./audit-records.ts (the record, the query, stream and subject names, all
 * re-exported here), ./audit-stream.ts (the stream and its limits),
 * ./audit-query.ts (reading), ./audit-throttle.ts (failed-login floods).
 */

import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import {
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import type { Logger } from "pino";
import { Counter, type Registry as MetricsRegistry } from "prom-client";
import { LogUnavailableError } from "../protocol/errors.js";
import { parseRegion } from "../protocol/events.js";
import { queryAudit } from "./audit-query.js";
import {
  type AuditEntry,
  type AuditQuery,
  type AuditRecord,
  auditStreamName,
  auditSubject,
} from "./audit-records.js";
import { ensureAuditStream } from "./audit-stream.js";
import { type Flood, LoginFailureThrottle } from "./audit-throttle.js";
import type { NatsClientConfig } from "./data/nats-connect.js";
import { type ManagedConnection, NatsConnectionManager } from "./data/nats-connection.js";

export * from "./audit-records.js";

export interface AuditLogOptions {
  /** The region's NATS servers. */
  servers: string[];
  /** Credentials, inbox prefix and TLS for them (data/nats-connect.ts); none: anonymous. Ignored with `connections`. */
  nats?: NatsClientConfig;
  /** The process's connection manager (data/nats-connection.ts); none: the log makes one of its own. */
  connections?: NatsConnectionManager;
  region: string;
  logger: Logger;
  /** Records older than this are discarded (default 90 days). */
  maxAgeDays?: number;
  /** The stream keeps at most this many bytes, discarding the oldest (default 1 GiB). */
  maxBytes?: number;
  /** Records kept in memory while NATS is unreachable; more are dropped (default 10 000). */
  maxBuffered?: number;
  /** The stream keeps at most this many messages (batches of records), discarding the oldest (default 10 000 000). */
  maxMessages?: number;
  /** Told when failed logins flood in (at most every ten minutes; ./audit-throttle.ts). */
  onFlood?: (flood: Flood) => void;
  /** Where `meridian_audit_records_dropped_total` is registered, if anywhere. */
  metrics?: MetricsRegistry;
  /** Connection name shown by the server (default "meridian-audit"). */
  name?: string;
  /** How long `open` waits for NATS before returning anyway (default 5 s). */
  waitMs?: number;
}

const BATCH = 256;
/** How long a record may wait for others to share its batch. */
const FLUSH_DELAY_MS = 50;
const PUBLISH_TIMEOUT_MS = 5_000;
const RETRY_MS = 500;
/** Attempts before a record the server rejects outright is dropped. */
const MAX_REJECTIONS = 3;
/** How long `close` waits for the buffer to drain. */
const CLOSE_DRAIN_MS = 5_000;
/** Longest `detail` kept; longer ones are cut (a record must stay small). */
const MAX_DETAIL = 1024;
/** Longest actor, repository and reference kept (names are shorter; anything longer came from a client). */
const MAX_NAME = 256;
/** Longest address kept (an IPv6 address with a zone fits). */
const MAX_ADDRESS = 64;
/** How often closed windows of failed logins are summed up (./audit-throttle.ts). */
const ROLL_EVERY_MS = 5_000;

/** A batch being stored: its message id stays the same across retries. */
interface Batch {
  id: string;
  lines: string[];
  rejections: number;
}

export class AuditLog {
  readonly #options: AuditLogOptions;
  readonly #log: Logger;
  readonly #stream: string;
  readonly #subject: string;
  readonly #maxBuffered: number;
  readonly #droppedCounter: Counter | undefined;
  #connection: ManagedConnection | undefined;
  /** The connection manager this log made for itself (closed with it), if it was given none. */
  #ownManager: NatsConnectionManager | undefined;
  #js: JetStreamClient | undefined;
  #jsm: JetStreamManager | undefined;
  /** Connected, and the stream was checked since the last (re)connect. */
  #writable = false;
  #closed = false;
  /** Serialized records not yet in a batch. */
  #buffer: string[] = [];
  /** The batch being stored (kept, with its id, until it is). */
  #batch: Batch | undefined;
  #flushing: Promise<void> | undefined;
  #scheduled = false;
  #dropped = 0;
  /** Whether the current overflow was logged (once per outage). */
  #overflowLogged = false;
  #ready: Promise<void>;
  #resolveReady!: () => void;
  readonly #logins = new LoginFailureThrottle();
  readonly #suppressedCounter: Counter | undefined;
  readonly #roller: NodeJS.Timeout;

  private constructor(options: AuditLogOptions) {
    this.#options = options;
    this.#log = options.logger.child({ component: "audit" });
    this.#stream = auditStreamName(options.region);
    this.#subject = auditSubject(options.region);
    this.#maxBuffered = Math.max(1, options.maxBuffered ?? 10_000);
    this.#droppedCounter =
      options.metrics === undefined
        ? undefined
        : new Counter({
            name: "meridian_audit_records_dropped_total",
            help: "Audit records lost: the buffer was full while NATS was unreachable, the server rejected them, or the log was closed before they were stored",
            registers: [options.metrics],
          });
    this.#suppressedCounter =
      options.metrics === undefined
        ? undefined
        : new Counter({
            name: "meridian_audit_login_failures_suppressed_total",
            help: "Failed logins not recorded one by one (a flood): summed up in aggregate audit records",
            registers: [options.metrics],
          });
    this.#ready = new Promise((resolve) => {
      this.#resolveReady = resolve;
    });
    this.#roller = setInterval(() => this.#rollLogins(Date.now()), ROLL_EVERY_MS).unref();
  }

  /**
   * Start the log of `region`. Resolves once the stream is ready, or after a
   * few seconds if NATS cannot be reached: the log then keeps connecting in
   * the background and buffers records meanwhile (a node starts without its
   * NATS, as it does for the event log). Throws only for an invalid region.
   */
  static async open(options: AuditLogOptions): Promise<AuditLog> {
    parseRegion(options.region);
    const audit = new AuditLog(options);
    audit.#connect().catch((err) => audit.#log.error({ err }, "audit log cannot start"));
    const waitMs = options.waitMs ?? 5_000;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      audit.#ready,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, waitMs);
      }),
    ]);
    clearTimeout(timer);
    if (!audit.#writable) audit.#log.warn({ region: options.region }, "audit log not connected yet");
    return audit;
  }

  /** Resolves once connected and the stream exists (tests wait on it). Never rejects. */
  ready(): Promise<void> {
    return this.#ready;
  }

  /** Records waiting to be stored. */
  get buffered(): number {
    return this.#buffer.length + (this.#batch?.lines.length ?? 0);
  }

  /** Records lost since the log was opened. */
  get dropped(): number {
    return this.#dropped;
  }

  /**
   * Buffer one record for storage; returns at once. Never throws: a record
   * that cannot be buffered (the log is closed, the buffer is full) is
   * counted in `dropped`.
   */
  record(entry: AuditEntry): void {
    try {
      if (this.#closed) {
        this.#drop(1, "closed");
        return;
      }
      if (entry.action === "login.failed" && entry.count === undefined && !this.#admitLoginFailure(entry))
        return;
      const at = entry.at === undefined ? new Date() : new Date(entry.at);
      const record: AuditRecord = {
        at: (Number.isNaN(at.getTime()) ? new Date() : at).toISOString(),
        region: this.#options.region,
        actor: clip(entry.actor, MAX_NAME),
        kind: entry.kind,
        action: entry.action,
        address: clip(entry.address, MAX_ADDRESS),
        ...(entry.repo === undefined ? {} : { repo: clip(entry.repo, MAX_NAME) }),
        ...(entry.reference === undefined ? {} : { reference: clip(entry.reference, MAX_NAME) }),
        status: entry.status,
        ...(entry.detail === undefined ? {} : { detail: clip(entry.detail, MAX_DETAIL) }),
        ...(entry.count === undefined ? {} : { count: entry.count }),
      };
      if (this.buffered >= this.#maxBuffered) {
        this.#drop(1, "buffer full");
        return;
      }
      this.#buffer.push(JSON.stringify(record));
      this.#schedule();
    } catch (err) {
      this.#drop(1, "invalid", err);
    }
  }

  /** Whether to record this failed login one by one (./audit-throttle.ts); else it is counted. */
  #admitLoginFailure(entry: AuditEntry): boolean {
    const now = Date.now();
    this.#rollLogins(now);
    const address = clip(entry.address, MAX_ADDRESS);
    const { record, flood } = this.#logins.admit(address, entry.actor, entry.status === 429, now);
    if (record) return true;
    this.#suppressedCounter?.inc();
    if (flood !== undefined) {
      this.#log.warn({ ...flood }, "failed logins flood");
      try {
        this.#options.onFlood?.(flood);
      } catch (err) {
        this.#log.warn({ err }, "flood alert failed");
      }
    }
    return false;
  }

  /** Record the aggregates of a window of failed logins that has closed. */
  #rollLogins(now: number): void {
    if (!this.#logins.pending) return;
    for (const s of this.#logins.roll(now))
      this.record({
        at: new Date(now).toISOString(),
        actor: s.lastActor,
        kind: "anonymous",
        action: "login.failed",
        address: s.address,
        status: 429,
        detail: `${s.count} failed logins from this address since ${new Date(s.since).toISOString()} not recorded one by one (the last name tried is the actor)`,
        count: s.count,
      });
  }

  /**
   * The newest records matching `q` (at most `q.limit`), returned oldest
   * first (./audit-query.ts). Fails with LogUnavailableError when NATS
   * cannot be reached, or when `signal` aborts.
   */
  async query(q: AuditQuery = {}, signal?: AbortSignal): Promise<AuditRecord[]> {
    const js = this.#js;
    const jsm = this.#jsm;
    if (!this.#writable || js === undefined || jsm === undefined || this.#closed)
      throw new LogUnavailableError("audit log unavailable");
    return queryAudit(js, jsm, this.#stream, q, this.#log, signal);
  }

  /** Stop taking records, wait (a few seconds at most) for the buffered ones to be stored, disconnect. */
  async close(): Promise<void> {
    if (this.#closed) return;
    clearInterval(this.#roller);
    // What a window of failed logins holds is summed up now, not lost.
    if (this.#logins.pending)
      for (const s of this.#logins.roll(Number.POSITIVE_INFINITY))
        this.record({
          actor: s.lastActor,
          kind: "anonymous",
          action: "login.failed",
          address: s.address,
          status: 429,
          detail: `${s.count} failed logins from this address not recorded one by one`,
          count: s.count,
        });
    this.#closed = true;
    // Never connected: nothing will come of waiting.
    const deadline = this.#connection?.current === undefined ? 0 : Date.now() + CLOSE_DRAIN_MS;
    while (this.buffered > 0 && Date.now() < deadline) {
      if (this.#writable) await this.#flushNow();
      if (this.buffered > 0) await sleep(50);
    }
    await this.#flushing;
    if (this.buffered > 0) {
      this.#drop(this.buffered, "closed");
      this.#buffer = [];
      this.#batch = undefined;
    }
    this.#writable = false;
    this.#resolveReady();
    await this.#connection?.close();
    await this.#ownManager?.close();
  }

  // ------------------------------------------------------------ connection

  async #connect(): Promise<void> {
    // The first connection is retried by the manager until close() stops the
    // attempts; later outages are the client's own reconnects (forever).
    let manager = this.#options.connections;
    if (manager === undefined) manager = this.#ownManager = new NatsConnectionManager(this.#options.nats);
    const connection = manager.open({
      servers: this.#options.servers,
      name: this.#options.name ?? "meridian-audit",
      reconnectTimeWaitMs: 250,
      retryMs: RETRY_MS,
      onDialFailed: (err, attempt) => {
        if (attempt === 1) this.#log.warn({ err, attempt }, "audit log cannot connect");
      },
      onDisconnect: () => {
        this.#writable = false;
        this.#log.warn("audit log disconnected");
      },
      onReconnect: () => void this.#becomeWritable(),
    });
    this.#connection = connection;
    const nc = await connection.connected;
    if (nc === undefined) return; // closed first
    // No API check here: #becomeWritable checks the stream, and retries.
    this.#jsm = await jetstreamManager(nc, { checkAPI: false });
    this.#js = jetstream(nc, { timeout: PUBLISH_TIMEOUT_MS });
    await this.#becomeWritable();
  }

  /** Check the stream (retrying until it can be), then let the buffer drain. */
  async #becomeWritable(): Promise<void> {
    while (!this.#closed && this.#connection?.current?.isClosed() === false) {
      try {
        await this.#ensureStream();
        this.#writable = true;
        this.#overflowLogged = false;
        this.#log.info({ region: this.#options.region }, "audit log connected");
        this.#resolveReady();
        this.#schedule();
        return;
      } catch (err) {
        this.#log.warn({ err }, "audit stream check failed");
        await sleep(RETRY_MS * 2);
      }
    }
  }

  #ensureStream(): Promise<void> {
    // Replicas come with the client configuration (`nats.replicas`), as for the event stream.
    const replicas = (this.#options.connections?.config ?? this.#options.nats)?.replicas;
    return ensureAuditStream(this.#jsm!, this.#options.region, { ...this.#options, replicas }, this.#log);
  }

  // ------------------------------------------------------------ flushing

  /**
   * Flush FLUSH_DELAY_MS after the first record waiting, so a steady stream
   * of requests makes few, larger batches (one publish per request cost the
   * region's nats-server ~90 µs of CPU per pull on one connection).
   */
  #schedule(): void {
    if (this.#scheduled || this.#flushing !== undefined || !this.#writable || this.buffered === 0) return;
    this.#scheduled = true;
    setTimeout(() => {
      this.#scheduled = false;
      void this.#flushNow();
    }, FLUSH_DELAY_MS).unref();
  }

  #flushNow(): Promise<void> {
    this.#flushing ??= this.#flush().finally(() => {
      this.#flushing = undefined;
      // A reconnect may have come while the last pass was ending.
      this.#schedule();
    });
    return this.#flushing;
  }

  async #flush(): Promise<void> {
    while (this.#writable && (this.#batch !== undefined || this.#buffer.length > 0)) {
      const js = this.#js!;
      this.#batch ??= { id: randomUUID(), lines: this.#buffer.splice(0, BATCH), rejections: 0 };
      const batch = this.#batch;
      try {
        await js.publish(this.#subject, Buffer.from(batch.lines.join("\n")), { msgID: batch.id });
        this.#batch = undefined;
        continue;
      } catch (err) {
        // A definite refusal by the server (not a timeout or a disconnect) is retried a few times only.
        if (err instanceof JetStreamApiError && ++batch.rejections >= MAX_REJECTIONS) {
          this.#batch = undefined;
          this.#drop(batch.lines.length, "rejected", err);
          continue;
        }
        const excess = this.buffered - this.#maxBuffered;
        if (excess > 0) {
          this.#buffer.splice(this.#buffer.length - excess, excess);
          this.#drop(excess, "buffer full");
        }
        this.#log.warn({ err, records: batch.lines.length }, "audit flush failed");
      }
      await sleep(RETRY_MS);
      // The stream may be gone (deleted, or the server lost its store): check it before retrying.
      if (this.#writable && !this.#closed) {
        try {
          await this.#ensureStream();
        } catch (err) {
          this.#log.warn({ err }, "audit stream check failed");
        }
      }
    }
  }

  #drop(count: number, reason: string, err?: unknown): void {
    this.#dropped += count;
    this.#droppedCounter?.inc(count);
    if (reason === "buffer full") {
      if (this.#overflowLogged) return;
      this.#overflowLogged = true;
    }
    this.#log.warn({ err, count, reason, dropped: this.#dropped }, "audit records dropped");
  }
}

/** `text` cut to at most `max` characters. */
function clip(text: string, max: number): string {
  return text.length <= max ? text : text.slice(0, max);
}
