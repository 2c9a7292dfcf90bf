// The region × region matrix: destination rows × source columns, one cell
// per link (source → destination) with its lag p50 / p99 over the recent
// window, its backlog (events pending, the oldest one's age) and its copy
// throughput, coloured by the server's verdict (`level`, thresholds in the
// state: mesh-client/dashboard-state.ts).
import { bytes, duration, el, fill, LEVEL_WORDS } from "./format.js";

export function renderMatrix(table, state) {
  const sources = state.regions.map((r) => r.region);
  const destinations = [...new Set(state.links.map((l) => l.dst))];
  if (destinations.length === 0) {
    fill(table, el("caption", {}, "No replication links: a single region."));
    return;
  }
  const cell = (src, dst) => state.links.find((l) => l.src === src && l.dst === dst);
  const head = el(
    "thead",
    {},
    el(
      "tr",
      {},
      el("th", { scope: "col" }, "to ↓ / from →"),
      ...sources.map((s) => el("th", { scope: "col" }, s)),
    ),
  );
  const body = el(
    "tbody",
    {},
    destinations.map((dst) =>
      el(
        "tr",
        {},
        el("th", { scope: "row" }, dst),
        sources.map((src) =>
          src === dst ? el("td", { class: "self" }, "—") : linkCell(cell(src, dst), src, dst),
        ),
      ),
    ),
  );
  fill(table, head, body);
}

function linkCell(link, src, dst) {
  if (link === undefined) return el("td", { "data-src": src, "data-dst": dst, "data-level": "unknown" }, "–");
  const lag =
    link.lagP99Ms === undefined ? "no lag yet" : `${duration(link.lagP50Ms)} / ${duration(link.lagP99Ms)}`;
  const pending =
    link.pending === undefined
      ? "pending –"
      : link.pending === 0
        ? "caught up"
        : `${link.pending} pending, oldest ${duration(link.oldestPendingMs)}`;
  const rate = link.bytesPerSecond === undefined ? "" : `${bytes(link.bytesPerSecond)}/s`;
  return el(
    "td",
    {
      "data-src": src,
      "data-dst": dst,
      "data-level": link.level,
      "data-stale": link.stale ? "true" : undefined,
      title: `${src} → ${dst}: ${link.why}${link.stale ? " (last good figures)" : ""}`,
    },
    el("span", { class: "lag" }, lag),
    el("span", { class: "backlog" }, pending),
    el(
      "span",
      { class: "rate" },
      [rate, link.bytes === undefined ? "" : ` ${bytes(link.bytes)} copied`].join("").trim() || "–",
    ),
    el("span", { class: "level" }, LEVEL_WORDS[link.level] ?? link.level, link.stale ? " (stale)" : ""),
  );
}
