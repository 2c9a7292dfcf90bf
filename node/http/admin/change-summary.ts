/**
 * What an admin change asked for, as its audit record's detail says it
 * (issue 11): the body's fields, secrets redacted, cut short. Used by the
 * admin API's audit hook (../admin.ts).
 */
import { parseAllDocuments } from "yaml";
import { isObject } from "./request.js";

/** Longest summary of a change's body in an audit record's detail. */
const MAX_SUMMARY = 400;
/** Nesting shown (a robot's grants: body → grants → grant → actions); deeper values as `{…}`. */
const MAX_DEPTH = 3;
/** Body fields never recorded, whatever the route: credentials. */
const SECRET_FIELD = /pass|secret|token|credential|key|seed|jwt/i;

/**
 * What an admin change asked for, for its audit record (issue 11): the body's
 * fields as ` {name=value …}` (nested values as compact JSON; a YAML policy
 * file as the policies' names), cut to MAX_SUMMARY characters. A field whose
 * name suggests a credential (SECRET_FIELD) is recorded as `<redacted>`,
 * never its value. Empty when there is no body.
 */
export function changeSummary(body: unknown): string {
  let value = body;
  if (typeof body === "string") {
    const text = body.trim();
    if (text === "") return "";
    try {
      value = JSON.parse(text);
    } catch {
      try {
        value = parseAllDocuments(text).map((d) => d.toJSON() as unknown);
        if (Array.isArray(value) && value.length === 1) value = value[0];
      } catch {
        return " {unreadable body}";
      }
    }
  }
  const summary = summarize(value, 0);
  if (summary === "") return "";
  return ` ${summary.length > MAX_SUMMARY ? `${summary.slice(0, MAX_SUMMARY - 1)}…` : summary}`;
}

function summarize(value: unknown, depth: number): string {
  if (value === null || value === undefined) return "";
  if (Array.isArray(value)) {
    // A policy file (several policies): their names; otherwise the items, shortly.
    const named = value.every((v) => isObject(v) && typeof v.name === "string");
    if (named) return `[${value.map((v) => (v as { name: string }).name).join(", ")}]`;
    return depth > MAX_DEPTH ? "[…]" : `[${value.map((v) => summarize(v, depth + 1)).join(", ")}]`;
  }
  if (isObject(value)) {
    if (depth > MAX_DEPTH) return "{…}";
    const parts = Object.entries(value).map(([k, v]) =>
      SECRET_FIELD.test(k) ? `${k}=<redacted>` : `${k}=${summarize(v, depth + 1)}`,
    );
    return `{${parts.join(" ")}}`;
  }
  return typeof value === "string" ? value.slice(0, 128) : String(value);
}
