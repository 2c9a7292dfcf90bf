/**
 * Schemas for the admin API's bodies and query strings (TypeBox), checked by
 * fastify before a handler runs, and the validator that turns a failed check
 * into the admin API's error: an UnsupportedError (400 `UNSUPPORTED`, the OCI
 * envelope through ../errors.ts), its message naming each field that is
 * wrong and its `detail.errors` listing them, one entry per field, as the
 * handlers' own checks always answered. A schema failure changes nothing: it
 * is answered before the handler runs.
 *
 * Why TypeBox's compiler and not fastify's default ajv: that ajv drops
 * unknown keys (`removeAdditional`) and coerces types (`"true"` passes as a
 * boolean), so `additionalProperties: false` would silently accept a
 * misspelt key. TypeBox checks the value as it is and is already the
 * project's schema library (protocol/config-schema.ts). The admin context
 * installs `validatorCompiler` for its routes; a route plugin mounted
 * elsewhere (../audit-routes.ts, in tests) passes it on the route itself.
 *
 * Schemas say what a field is (type, pattern, range, the keys allowed); the
 * handlers keep what needs more than one field or the registry (a region's
 * count, a scope's name rules with their own OCI code). `want` on a
 * property is how its error reads: `force: want true or false, got "yes"`.
 */
import type { FastifySchemaCompiler } from "fastify";
import Type, { type TSchema } from "typebox";
import { Compile } from "typebox/compile";
import { UnsupportedError } from "../../../protocol/errors.js";
import { REGION_PATTERN } from "../../../protocol/events.js";

export { Type };

/** A property's schema with how its error reads (`want: "a region name"`). */
export function want<S extends TSchema>(schema: S, text: string): S {
  return { ...schema, want: text } as S;
}

/** A region name (protocol/events.ts REGION_PATTERN). */
export const RegionName = () => want(Type.String({ pattern: REGION_PATTERN }), "a region name");

/** A JSON object of exactly these keys (an unknown key is an error naming it). */
export function Fixed<P extends Parameters<typeof Type.Object>[0]>(properties: P) {
  return Type.Object(properties, { additionalProperties: false });
}

interface SchemaError {
  keyword: string;
  instancePath: string;
  params: Record<string, unknown>;
  message: string;
}

/**
 * fastify's `validatorCompiler` for the admin API: a checked value passes
 * unchanged (no coercion, no key removed); a failure is an UnsupportedError
 * listing one problem per field.
 */
export const validatorCompiler: FastifySchemaCompiler<TSchema> = ({ schema, httpPart }) => {
  const check = Compile(schema);
  const query = httpPart === "querystring";
  return (value: unknown) => {
    if (check.Check(value)) return { value };
    const problems = describe(schema, value, [...check.Errors(value)] as SchemaError[], query);
    return { error: new UnsupportedError(problems.join("; "), { detail: { errors: problems } }) };
  };
};

/** Problems listed at most, whatever the checker reports: a body of a thousand unknown keys is not echoed back whole. */
const MAX_PROBLEMS = 20;

/** One line per field that is wrong, in the order the check finds them. */
function describe(schema: TSchema, value: unknown, errors: SchemaError[], query: boolean): string[] {
  const properties = ((schema as { properties?: Record<string, TSchema> }).properties ?? {}) as Record<
    string,
    TSchema & { want?: string }
  >;
  const known = Object.keys(properties);
  const problems = new Map<string, string>();
  for (const e of errors) {
    if (e.keyword === "boolean") {
      // `additionalProperties: false` failing for one key (listed before, and for many keys
      // instead of, the error naming them all): an unknown key, at the top or inside a field.
      const path = e.instancePath.slice(1).split("/");
      if (path.length === 1) problems.set(path[0]!, unknownKey(path[0]!, known, query));
      else if (!problems.has(path[0]!)) problems.set(path[0]!, `${pathText(path)}: unknown key`);
      continue;
    }
    if (e.instancePath === "") {
      if (e.keyword === "additionalProperties") {
        for (const key of (e.params.additionalProperties as string[] | undefined) ?? [])
          problems.set(key, unknownKey(key, known, query));
      } else if (e.keyword === "required") {
        for (const key of (e.params.requiredProperties as string[] | undefined) ?? []) {
          const w = properties[key]?.want;
          problems.set(key, `${key}: required${w === undefined ? "" : `: ${w}`}`);
        }
      } else {
        problems.set("", `request ${query ? "query" : "body"}: want an object, got ${typeName(value)}`);
      }
      continue;
    }
    const path = e.instancePath.slice(1).split("/");
    const field = path[0]!;
    if (problems.has(field)) continue;
    const got = (value as Record<string, unknown>)[field];
    if (query && Array.isArray(got)) problems.set(field, `parameter ${field}: give it once`);
    else if (path.length > 1) problems.set(field, nested(pathText(path), e));
    else {
      const w = properties[field]?.want;
      problems.set(
        field,
        w === undefined ? `${field}: ${e.message}` : `${field}: want ${w}, got ${show(got)}`,
      );
    }
  }
  const all = [...problems.values()];
  if (all.length === 0) return ["request: does not match its schema"];
  return all.length <= MAX_PROBLEMS
    ? all
    : [...all.slice(0, MAX_PROBLEMS), `… and ${all.length - MAX_PROBLEMS} more`];
}

function unknownKey(key: string, known: string[], query: boolean): string {
  return query
    ? `unknown parameter ${JSON.stringify(key.slice(0, 64))}: want ${known.join(", ")}`
    : `${key.slice(0, 64)}: unknown key`;
}

/** A problem inside a field (a grant of a robot): where exactly, and what. */
function nested(where: string, e: SchemaError): string {
  const keys = (name: string) => ((e.params[name] as string[] | undefined) ?? []).map((k) => k.slice(0, 64));
  if (e.keyword === "additionalProperties")
    return keys("additionalProperties")
      .map((k) => `${where}.${k}: unknown key`)
      .join("; ");
  if (e.keyword === "required")
    return keys("requiredProperties")
      .map((k) => `${where}.${k}: required`)
      .join("; ");
  return `${where}: ${e.message}`;
}

/** `grants/0/project` as `grants[0].project`. */
function pathText(path: string[]): string {
  return path.map((p, i) => (/^\d+$/.test(p) ? `[${p}]` : i === 0 ? p : `.${p}`)).join("");
}

export function typeName(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "a list" : typeof v;
}

export function show(v: unknown): string {
  return v === undefined ? "nothing" : (JSON.stringify(v)?.slice(0, 64) ?? String(v));
}
