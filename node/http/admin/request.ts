/**
 * Reading the admin API's requests: bodies arrive as text (the admin context
 * parses every content type as a string, ../admin.ts) and each route says
 * how to read its own: a policy file as YAML or JSON (./policies.ts), a
 * request as JSON or, when the content type says so, YAML. `readBody` runs
 * as a route's `preValidation` hook, so the route's schema (./schema.ts)
 * checks the value, not the text. Unreadable input is a PolicyInvalidError
 * for a policy (so it lists like any other policy problem), an
 * UnsupportedError (400) for anything else.
 */
import type { FastifyRequest, preValidationAsyncHookHandler } from "fastify";
import { LineCounter, parseDocument } from "yaml";
import { NameInvalidError, PolicyInvalidError, UnsupportedError } from "../../../protocol/errors.js";
import { parseRegion } from "../../../protocol/events.js";

const POLICY_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const YAML_TYPES = /^(?:application|text)\/(?:x-)?yaml\b/i;
const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\b/i;

/**
 * A route's `preValidation`: the text body as a value, read by `bodyValue`;
 * with `emptyIs`, an empty or absent body stands for that value (a rebuild
 * of this region is `POST /rebuild` with no body).
 */
export function readBody(emptyIs?: Record<string, never>): preValidationAsyncHookHandler {
  return async (req) => {
    if (emptyIs !== undefined && bodyText(req).trim() === "") req.body = { ...emptyIs };
    else req.body = bodyValue(req, "request");
  };
}

export function bodyText(req: FastifyRequest): string {
  return typeof req.body === "string" ? req.body : "";
}

export function isJson(req: FastifyRequest): boolean {
  return JSON_TYPE.test(req.headers["content-type"] ?? "");
}

/** The body as a value: YAML when the content type says so, JSON otherwise. */
export function bodyValue(req: FastifyRequest, what: "policy" | "request"): unknown {
  const text = bodyText(req);
  if (text.trim() === "") throw problem(what, ["request body: empty"]);
  if (!YAML_TYPES.test(req.headers["content-type"] ?? "")) return jsonValue(text, what);
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    throw problem(
      what,
      doc.errors.map((e) => {
        const { line, col } = lineCounter.linePos(e.pos[0]);
        return `${what} YAML: line ${line}, column ${col}: ${e.message}`;
      }),
    );
  }
  try {
    return doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw problem(what, [`${what} YAML: ${(err as Error).message}`]);
  }
}

export function jsonValue(text: string, what: "policy" | "request"): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw problem(what, [`${what} JSON: ${(err as Error).message}`]);
  }
}

function problem(what: "policy" | "request", errors: string[]): Error {
  return what === "policy" ? policyInvalid(errors) : badRequest(errors);
}

export function policyInvalid(errors: string[]): PolicyInvalidError {
  return new PolicyInvalidError(errors.join("; "), { detail: { errors } });
}

export function badRequest(errors: string[]): UnsupportedError {
  return new UnsupportedError(errors.join("; "), { detail: { errors } });
}

export function policyName(raw: string): string {
  if (!POLICY_NAME.test(raw))
    throw new NameInvalidError(`invalid policy name: ${raw.slice(0, 64)}`, {
      detail: { name: raw.slice(0, 64) },
    });
  return raw;
}

/** A time given as ISO-8601 or as milliseconds since the epoch. */
export function parseTime(text: string): number {
  const ms = /^\d{1,15}$/.test(text) ? Number(text) : Date.parse(text);
  if (!Number.isFinite(ms))
    throw new UnsupportedError(
      `invalid time ${JSON.stringify(text.slice(0, 64))}: want ISO-8601 or milliseconds`,
    );
  return ms;
}

export function isRegion(name: string): boolean {
  try {
    parseRegion(name);
    return true;
  } catch {
    return false;
  }
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
