/**
 * What the audit log (./audit.ts) stores and answers: one record per audited
 * request, the query's fields and bounds, and the stream and subject of a
 * region's log (`AUDIT_<region>` on `meridian-audit.<region>`).
 */

export const AUDIT_ACTIONS = ["pull", "push", "delete", "login", "login.failed", "admin"] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];
export const AUDIT_KINDS = ["user", "robot", "anonymous", "service"] as const;
export type AuditActorKind = (typeof AUDIT_KINDS)[number];

/** One audited request. */
export interface AuditRecord {
  /** When it happened (ISO-8601, the node's clock). */
  at: string;
  /** The region whose node answered. */
  region: string;
  /** User or robot name, "anonymous", or a service name. */
  actor: string;
  kind: AuditActorKind;
  action: AuditAction;
  /** The client's source address. */
  address: string;
  repo?: string;
  /** Tag or digest. */
  reference?: string;
  /** The HTTP status answered. */
  status: number;
  /** E.g. the admin route, or why a login failed. */
  detail?: string;
  /** An aggregate: how many failed logins from `address` this one record stands for (./audit-throttle.ts). */
  count?: number;
}

/** What `query` selects; every given field must match (exactly, for the strings). */
export interface AuditQuery {
  /** Records at or after this time (by their `at`). */
  since?: Date;
  /** Records at or before this time (by their `at`). */
  until?: Date;
  actor?: string;
  action?: AuditAction;
  repo?: string;
  /** At most this many records (default 1000, at most MAX_AUDIT_LIMIT). */
  limit?: number;
}

export const DEFAULT_AUDIT_LIMIT = 1000;
export const MAX_AUDIT_LIMIT = 10_000;

/** An `AuditRecord` without the fields the log fills in (`at` may be given, e.g. the request's start). */
export type AuditEntry = Omit<AuditRecord, "at" | "region"> & { at?: string };

// The names are shared with the SIEM stream's reader (replication/webhook-delivery.ts).
export { auditStreamName, auditSubject } from "../protocol/siem.js";
