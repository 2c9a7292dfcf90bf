/**
 * The audit log's stream (./audit.ts): created with its limits, or its
 * limits updated when they differ (another node of the region may have
 * created it; under `meridian up` only the operator may update it, and a
 * node then keeps the limits it finds).
 */
import {
  DiscardPolicy,
  JetStreamApiError,
  type JetStreamManager,
  RetentionPolicy,
  StorageType,
} from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { auditStreamName, auditSubject } from "./audit-records.js";
import { isPermissionViolation } from "./data/nats-connect.js";

/** The stream's limits (./audit.ts AuditLogOptions). */
export interface AuditStreamLimits {
  /** Replicas when created (a JetStream cluster: 3); default 1. */
  replicas?: number;
  maxAgeDays?: number;
  maxBytes?: number;
  maxMessages?: number;
}

const DAY_MS = 24 * 60 * 60_000;
const GiB = 1024 * 1024 * 1024;
/** Largest message the stream accepts: a full batch of records cut to the lengths in ./audit.ts fits. */
export const MAX_MESSAGE_BYTES = 1024 * 1024;
const STREAM_NAME_IN_USE = 10058;

export async function ensureAuditStream(
  jsm: JetStreamManager,
  region: string,
  options: AuditStreamLimits,
  log: Logger,
): Promise<void> {
  const stream = auditStreamName(region);
  const limits = {
    max_age: nanos((options.maxAgeDays ?? 90) * DAY_MS),
    max_bytes: options.maxBytes ?? GiB,
    max_msgs: options.maxMessages ?? 10_000_000,
    max_msg_size: MAX_MESSAGE_BYTES,
  };
  const update = async () => {
    const info = await jsm.streams.info(stream);
    if (
      info.config.max_age !== limits.max_age ||
      info.config.max_bytes !== limits.max_bytes ||
      info.config.max_msgs !== limits.max_msgs ||
      info.config.max_msg_size !== limits.max_msg_size
    )
      await jsm.streams.update(stream, limits).catch((err) => {
        // Under `meridian up` only the operator may change a stream (cli/nats-auth.ts): keep its limits.
        if (!isPermissionViolation(err)) throw err;
        log.warn({ stream: stream }, "audit stream limits differ; only the operator may update");
      });
  };
  try {
    await update();
    return;
  } catch (err) {
    if (!(err instanceof JetStreamApiError) || err.status !== 404) throw err;
  }
  try {
    await jsm.streams.add({
      name: stream,
      subjects: [auditSubject(region)],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      duplicate_window: nanos(120_000),
      num_replicas: options.replicas ?? 1,
      ...limits,
    });
  } catch (err) {
    // Another node of the region created it in between.
    if (!(err instanceof JetStreamApiError) || err.code !== STREAM_NAME_IN_USE) throw err;
    await update();
  }
}
