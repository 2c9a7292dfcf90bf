// The search box: REPO:TAG or REPO@DIGEST → for each region, whether it is
// present, pending, failed (and why), deleted, not selected by a policy or
// absent, with the digest each region serves (GET /ui/api/search).
import { el, fill } from "./format.js";

const STATE_LEVEL = {
  present: "ok",
  pending: "warn",
  failed: "bad",
  deleted: "idle",
  "not selected": "idle",
  absent: "bad",
  unknown: "unknown",
};

export function setupSearch(form, input, out, api) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const ref = input.value.trim();
    if (ref === "") return;
    fill(out, el("p", { class: "muted" }, `Looking for ${ref}…`));
    const res = await api(`api/search?ref=${encodeURIComponent(ref)}`);
    if (res === undefined) return;
    const body = await res.json().catch(() => ({}));
    if (!res.ok) {
      fill(
        out,
        el(
          "p",
          { class: "error", role: "alert" },
          body.errors?.[0]?.message ?? `search failed (${res.status})`,
        ),
      );
      return;
    }
    renderLocation(out, body);
  });
}

export function renderLocation(out, location) {
  const digests = new Set(location.regions.filter((r) => r.digest).map((r) => r.digest));
  fill(
    out,
    el(
      "p",
      {},
      el("strong", {}, location.reference),
      digests.size > 1
        ? el("span", { class: "warn-text" }, ` — regions serve ${digests.size} different digests`)
        : "",
    ),
    el(
      "table",
      { class: "locations" },
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          el("th", {}, "region"),
          el("th", {}, "state"),
          el("th", {}, "digest"),
          el("th", {}, "detail"),
        ),
      ),
      el(
        "tbody",
        {},
        location.regions.map((r) =>
          el(
            "tr",
            { "data-region": r.region, "data-state": r.state },
            el("th", { scope: "row" }, r.region),
            el("td", { "data-level": STATE_LEVEL[r.state] ?? "unknown" }, r.state),
            el("td", { class: "digest" }, r.digest ?? "–"),
            el("td", {}, r.detail ?? ""),
          ),
        ),
      ),
    ),
  );
}
