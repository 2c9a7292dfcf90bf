// Each region's health: as the front door's probes see it (the whole mesh)
// or as the region's own peer tells the node (one region); RTT, misses,
// failover epoch, the fence (writes refused as a home, and why), what its
// peer sees of the others, and the repositories homed in it.
import { ago, duration, el, fill, LEVEL_WORDS } from "./format.js";

export function renderHealth(box, state) {
  fill(
    box,
    state.regions.map((r) => {
      const homes = state.homes.filter((h) => h.home === r.region);
      const status = r.up === undefined ? "not known here" : r.up ? "up" : "DOWN";
      return el(
        "article",
        { class: "region", "data-region": r.region, "data-level": r.level },
        el(
          "h3",
          {},
          el("span", { class: "dot", "aria-hidden": "true" }),
          r.region,
          " ",
          el("span", { class: "status" }, status),
          el("span", { class: "level" }, LEVEL_WORDS[r.level] ?? r.level),
        ),
        el(
          "dl",
          {},
          row("seen by", r.seenBy),
          r.up === false ? row("below", "as of its last answer", "warn") : null,
          r.rttMs === undefined ? null : row("RTT", duration(r.rttMs)),
          r.misses === undefined ? null : row("missed probes", String(r.misses)),
          r.lastSeenAt === undefined ? null : row("last answer", ago(r.lastSeenAt)),
          r.epoch === undefined ? null : row("failover epoch", String(r.epoch)),
          r.appliedSeq === undefined ? null : row("log position", String(r.appliedSeq)),
          r.fence === undefined
            ? null
            : row(
                "home writes",
                r.fence === "" ? "accepted" : `refused: ${r.fence}`,
                r.fence === "" ? "" : "warn",
              ),
          r.lastError === undefined || r.up ? null : row("error", r.lastError, "bad"),
          r.peers.length === 0
            ? null
            : row(
                "its peer sees",
                r.peers
                  .map(
                    (p) =>
                      `${p.region} ${p.up ? "up" : "down"}${p.rttMs === undefined ? "" : ` ${duration(p.rttMs)}`}`,
                  )
                  .join(", "),
              ),
          row(
            "homes",
            homes.length === 0 ? "none" : homes.map((h) => `${h.scope || "(all)"} @${h.epoch}`).join(", "),
          ),
        ),
      );
    }),
  );
}

function row(name, value, level = "") {
  return [el("dt", {}, name), el("dd", level === "" ? {} : { "data-level": level }, value)];
}
