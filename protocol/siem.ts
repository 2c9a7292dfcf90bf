/**
 * The SIEM stream (issue 17, item 5): a region's audit records (node/audit.ts:
 * every pull, push, delete, login, failed login and admin change a node of
 * the region answered) as CloudEvents 1.0 in batch mode. Pure: the
 * delivering loop is replication/siem-delivery.ts.
 *
 * Where the records come from: the region's audit stream `AUDIT_<region>`
 * (JetStream, file storage), where each node's audit log publishes its
 * records in batches, one message per batch (up to 256 records, after a
 * 50 ms linger), one JSON record per line. A SIEM subscription reads that
 * stream through its own durable consumer, so its position survives a
 * worker's restart and a node's restart loses nothing the stream stored.
 *
 * One POST per stored message: `Content-Type:
 * application/cloudevents-batch+json`, a JSON array of CloudEvents, one per
 * record. The audit log's own batching is the batch bound (at most 256
 * records, one message of at most 1 MiB) and its linger (50 ms); under a
 * pull load a POST carries up to 256 pulls, not one each.
 *
 * Ids are stable: `<region>:<stream sequence>:<line>` — the message's
 * sequence in the audit stream and the record's line in it — so a retry,
 * a redelivery after a restart or a replay carries the same ids and a
 * receiver de-duplicates on (source, id).
 *
 *   type                              data
 *   io.meridian.audit.pull            the audit record as stored (at, region, actor,
 *   io.meridian.audit.push            kind, action, address, repo?, reference?,
 *   io.meridian.audit.delete          status, detail?, count?)
 *   io.meridian.audit.login
 *   io.meridian.audit.login.failed
 *   io.meridian.audit.admin
 *
 * A record whose action this version does not know is sent as
 * `io.meridian.audit` (data as stored); a line that is not JSON is skipped
 * (it cannot have been written by a node).
 */

/** A region's audit stream (node/audit.ts writes it; a SIEM subscription reads it). */
export function auditStreamName(region: string): string {
  return `AUDIT_${region}`;
}

/** The one subject of a region's audit stream (not under `meridian.<region>.`: node/audit.ts says why). */
export function auditSubject(region: string): string {
  return `meridian-audit.${region}`;
}

/** The CloudEvent of one audit record. */
export interface AuditCloudEvent {
  specversion: "1.0";
  id: string;
  source: string;
  type: string;
  subject: string;
  time: string;
  datacontenttype: "application/json";
  data: Record<string, unknown>;
}

const ACTION = /^[a-z][a-z.]{0,31}$/;

/** The content type of a SIEM delivery. */
export const SIEM_CONTENT_TYPE = "application/cloudevents-batch+json; charset=utf-8";

/**
 * The CloudEvents of the records in one audit-stream message (`lines`: its
 * body split by newline) stored at `streamSeq` in `region`'s audit stream.
 */
export function auditCloudEvents(
  lines: readonly string[],
  region: string,
  streamSeq: number,
): AuditCloudEvent[] {
  const out: AuditCloudEvent[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === "") return;
    let record: Record<string, unknown>;
    try {
      const parsed = JSON.parse(line) as unknown;
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return;
      record = parsed as Record<string, unknown>;
    } catch {
      return;
    }
    const action =
      typeof record.action === "string" && ACTION.test(record.action) ? record.action : undefined;
    const at = typeof record.at === "string" && !Number.isNaN(Date.parse(record.at)) ? record.at : undefined;
    const actor = typeof record.actor === "string" ? record.actor : "";
    const repo = typeof record.repo === "string" ? record.repo : undefined;
    const ref = typeof record.reference === "string" ? record.reference : undefined;
    out.push({
      specversion: "1.0",
      id: `${region}:${streamSeq}:${i}`,
      source: `meridian/${region}/audit`,
      type: action === undefined ? "io.meridian.audit" : `io.meridian.audit.${action}`,
      subject: repo === undefined ? actor : ref === undefined ? repo : `${repo}:${ref}`,
      time: at ?? new Date(0).toISOString(),
      datacontenttype: "application/json",
      data: record,
    });
  });
  return out;
}
