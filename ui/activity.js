// Recent activity across the regions (GET /ui/api/activity, refreshed every
// few seconds): tag conflicts, alerts (the delete breaker, login floods),
// failed replications with their reason, policy and GC runs, failovers,
// promotions (passed, or refused with the gates that failed).
import { ago, el, fill } from "./format.js";

const KIND_LEVEL = {
  conflict: "warn",
  alert: "bad",
  "replication-failed": "bad",
  "policy-run": "idle",
  "gc-run": "idle",
  failover: "warn",
  promotion: "idle",
};

export const ACTIVITY_REFRESH_MS = 5_000;

/** An item's detail (an object of fields) as "key: value" pairs. */
function details(detail) {
  if (typeof detail !== "object") return String(detail);
  return Object.entries(detail)
    .filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`)
    .join(", ");
}

export async function refreshActivity(list, api) {
  const res = await api("api/activity");
  if (res === undefined) return;
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    fill(
      list,
      el("li", { class: "muted" }, body.errors?.[0]?.message ?? `activity unavailable (${res.status})`),
    );
    return;
  }
  const items = body.items ?? [];
  fill(
    list,
    items.length === 0 ? el("li", { class: "muted" }, "Nothing recent.") : null,
    items.map((item) =>
      el(
        "li",
        { "data-kind": item.kind, "data-level": KIND_LEVEL[item.kind] ?? "unknown" },
        el("span", { class: "kind" }, item.kind),
        el("span", { class: "where" }, item.region),
        el("time", { datetime: item.at, title: item.at }, ago(item.at)),
        el("span", { class: "summary" }, item.summary),
        item.detail ? el("span", { class: "detail" }, details(item.detail)) : null,
      ),
    ),
    (body.unreachable ?? []).length === 0
      ? null
      : el("li", { class: "muted" }, `Not answering: ${body.unreachable.join(", ")}`),
  );
}
