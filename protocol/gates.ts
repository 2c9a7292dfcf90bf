/**
 * Promotion gates (pure): whether a candidate manifest may be promoted,
 * decided from evidence the caller gathered (signature manifests and their
 * payloads, attached reports, annotations and labels, when the source tag
 * got its digest). No clock is read here: the caller passes `now`.
 *
 * Gates, each optional in the configuration (absent: not evaluated):
 *
 * - `signature`: one of the named public keys verifies one of the cosign
 *   signatures found for the digest (protocol/cosign.ts), for real.
 * - `vulnerabilities`: every attached report whose artifactType is one of
 *   `artifactTypes` is read (protocol/vuln-reports.ts); a finding at or
 *   above `failAt` fails the gate, so does a malformed report. No report:
 *   fails "never scanned" when `required` (the default), passes otherwise.
 * - `annotations`: each key must be present on the manifest's annotations
 *   or the image config's labels, with the value given ("*": any value).
 * - `minAge`: the source tag has held this digest for at least `seconds`.
 *
 * Each result names its gate and gives a reason a person understands;
 * `evaluateGates` returns every configured gate's result, never stopping at
 * the first failure, so a refusal lists all that is wrong.
 */
import Type, { type Static } from "typebox";
import Value from "typebox/value";
import { type FoundSignature, type NamedKey, verifyAnySignature } from "./cosign.js";
import { type Finding, parseVulnReport, SEVERITIES, severityRank } from "./vuln-reports.js";

const strict = { additionalProperties: false } as const;

/** The gate configuration of a destination or project (checked by `parseGateConfig`). */
export const GateConfigSchema = Type.Object(
  {
    signature: Type.Optional(
      Type.Object(
        { keys: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }) },
        { ...strict, description: "names of public keys (node setting verification.keys)" },
      ),
    ),
    vulnerabilities: Type.Optional(
      Type.Object(
        {
          artifactTypes: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
          failAt: Type.Enum(["low", "medium", "high", "critical"]),
          required: Type.Optional(Type.Boolean()),
        },
        strict,
      ),
    ),
    annotations: Type.Optional(Type.Record(Type.String({ minLength: 1 }), Type.String())),
    minAge: Type.Optional(Type.Object({ seconds: Type.Integer({ minimum: 0 }) }, strict)),
  },
  strict,
);
export type GateConfig = Static<typeof GateConfigSchema>;
export type GateName = "signature" | "vulnerabilities" | "annotations" | "minAge";

/** Parse a gate configuration; throws one Error listing every problem, each naming its key. */
export function parseGateConfig(value: unknown, where = "gates"): GateConfig {
  const problems: string[] = [];
  for (const e of Value.Errors(GateConfigSchema, value)) {
    const path = [where, ...e.instancePath.split("/").slice(1)].join(".");
    if (e.keyword === "additionalProperties") {
      const extra = (e.params as { additionalProperties?: string[] }).additionalProperties ?? [];
      for (const k of extra) problems.push(`${path}: unknown key "${k}"`);
    } else if (e.keyword === "required") {
      const missing = (e.params as { requiredProperties?: string[] }).requiredProperties ?? [];
      for (const k of missing) problems.push(`${path}.${k}: missing`);
    } else if (e.keyword === "enum") {
      problems.push(
        `${path}: ${JSON.stringify(valueAt(value, e.instancePath))} is not one of low, medium, high, critical`,
      );
    } else if (e.keyword !== "boolean" && e.keyword !== "anyOf") {
      problems.push(`${path}: ${e.message}`);
    }
  }
  if (problems.length > 0)
    throw new Error(`invalid gate configuration: ${[...new Set(problems)].join("; ")}`);
  return value as GateConfig;
}

function valueAt(value: unknown, pointer: string): unknown {
  return pointer
    .split("/")
    .slice(1)
    .reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], value);
}

/** An attached report: where it came from and the bytes of its report layer. */
export interface FoundReport {
  artifactType: string;
  /** The referrer's manifest digest, for the reason. */
  source: string;
  bytes: Uint8Array;
}

/** What the gates decide on, gathered by the caller. */
export interface GateEvidence {
  /** The candidate manifest's digest. */
  subject: string;
  signatures: readonly FoundSignature[];
  /** Every configured public key by name (the signature gate picks the ones it names). */
  keys: ReadonlyMap<string, string>;
  reports: readonly FoundReport[];
  annotations: Readonly<Record<string, string>>;
  labels: Readonly<Record<string, string>>;
  /** When (ms since the epoch) the source tag was set to this digest; undefined: unknown. */
  tagSetAt?: number;
  now: number;
}

export interface GateResult {
  gate: GateName;
  ok: boolean;
  /** Starts with the gate's name: "signature: …". */
  reason: string;
}

export function evaluateGates(
  config: GateConfig,
  evidence: GateEvidence,
): { ok: boolean; results: GateResult[] } {
  const results: GateResult[] = [];
  if (config.signature !== undefined) results.push(signatureGate(config.signature.keys, evidence));
  if (config.vulnerabilities !== undefined) results.push(vulnerabilityGate(config.vulnerabilities, evidence));
  if (config.annotations !== undefined) results.push(annotationGate(config.annotations, evidence));
  if (config.minAge !== undefined) results.push(minAgeGate(config.minAge.seconds, evidence));
  return { ok: results.every((r) => r.ok), results };
}

const result = (gate: GateName, ok: boolean, reason: string): GateResult => ({
  gate,
  ok,
  reason: `${gate}: ${reason}`,
});

export function signatureGate(names: readonly string[], e: GateEvidence): GateResult {
  const keys: NamedKey[] = [];
  for (const name of names) {
    const pem = e.keys.get(name);
    if (pem === undefined) return result("signature", false, `key ${name} is not configured`);
    keys.push({ name, pem });
  }
  const r = verifyAnySignature(e.subject, e.signatures, keys);
  return r.ok
    ? result("signature", true, `verified with key ${r.keyId}`)
    : result("signature", false, r.reason);
}

export function vulnerabilityGate(
  c: NonNullable<GateConfig["vulnerabilities"]>,
  e: GateEvidence,
): GateResult {
  const reports = e.reports.filter((r) => c.artifactTypes.includes(r.artifactType));
  if (reports.length === 0)
    return c.required === false
      ? result("vulnerabilities", true, "no report attached (not required)")
      : result("vulnerabilities", false, `never scanned: no report of type ${c.artifactTypes.join(" or ")}`);
  const threshold = severityRank(c.failAt);
  const failing: string[] = [];
  for (const report of reports) {
    const parsed = parseVulnReport(report.bytes);
    if ("malformed" in parsed)
      return result("vulnerabilities", false, `report ${report.source} is malformed: ${parsed.malformed}`);
    for (const f of parsed.findings) if (severityRank(f.severity) >= threshold) failing.push(describe(f));
  }
  if (failing.length > 0) {
    const shown =
      failing.slice(0, 5).join(", ") + (failing.length > 5 ? ` and ${failing.length - 5} more` : "");
    return result("vulnerabilities", false, `${failing.length} finding(s) at or above ${c.failAt}: ${shown}`);
  }
  return result("vulnerabilities", true, `no finding at or above ${c.failAt} in ${reports.length} report(s)`);
}

const describe = (f: Finding) => `${f.id} (${f.severity})`;

export function annotationGate(required: Readonly<Record<string, string>>, e: GateEvidence): GateResult {
  const wrong: string[] = [];
  for (const [key, want] of Object.entries(required)) {
    const have = e.annotations[key] ?? e.labels[key];
    if (have === undefined) wrong.push(`${key} is missing`);
    else if (want !== "*" && have !== want)
      wrong.push(`${key} is ${JSON.stringify(have)}, not ${JSON.stringify(want)}`);
  }
  return wrong.length === 0
    ? result("annotations", true, "every required annotation is present")
    : result("annotations", false, wrong.join("; "));
}

export function minAgeGate(seconds: number, e: GateEvidence): GateResult {
  if (e.tagSetAt === undefined) return result("minAge", false, "when the tag was set is unknown");
  const held = Math.floor((e.now - e.tagSetAt) / 1000);
  return held >= seconds
    ? result("minAge", true, `tag held its digest for ${held} s (at least ${seconds} s)`)
    : result("minAge", false, `tag held its digest for ${Math.max(held, 0)} s, less than ${seconds} s`);
}

/** The severities a `failAt` may name, for documentation and the CLI. */
export const FAIL_AT_SEVERITIES = SEVERITIES.slice(2);
