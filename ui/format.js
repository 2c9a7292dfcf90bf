// Small helpers shared by the sections: building DOM nodes (text only, never
// HTML strings: nothing from the server is parsed as markup) and formatting.

/** An element with attributes (`class`, `data-*`, `title`…) and children (nodes or text). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replace a node's children. */
export function fill(node, ...children) {
  node.replaceChildren();
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** 840 ms, 1.2 s, 42 s, 3 min, 2 h. */
export function duration(ms) {
  if (ms === undefined || ms === null) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 120_000) return `${Math.round(ms / 1000)} s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min`;
  return `${Math.round(ms / 3_600_000)} h`;
}

/** 512 B, 1.5 KiB, 3.2 MiB… */
export function bytes(n) {
  if (n === undefined || n === null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

/** "12 s ago" from an ISO time. */
export function ago(iso, now = Date.now()) {
  if (!iso) return "never";
  return `${duration(Math.max(0, now - Date.parse(iso)))} ago`;
}

/** The words a colour stands for (shown next to it: colour is never the only signal). */
export const LEVEL_WORDS = { ok: "ok", warn: "slow", bad: "bad", idle: "idle", unknown: "unknown" };
