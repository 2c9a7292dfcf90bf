/**
 * Block-pull policies (issue 18, item 3), pure: what a project's pull policy
 * is and who it spares. The node (node/pull-gate.ts) gathers the evidence and
 * evaluates the policy's gates with protocol/gates.ts, the same code and the
 * same verification as promotion gates.
 *
 * A policy names its project and the gates a manifest must pass to be
 * pulled from it:
 * - `signature`: a cosign signature verifying with one of the named keys;
 * - `vulnerabilities`: no attached report of the given artifact types with a
 *   finding at or above `failAt`; with `required` (the default) a manifest
 *   never scanned is refused too;
 * - `annotations`: required annotations or image labels.
 * `minAge` is not a pull gate (a pull by digest has no tag to age): refused
 * with a clear error.
 *
 * Exemptions: system admins (unless `exempt.systemAdmins` is false) and the
 * robots named in `exempt.robots` pull whatever the gates say (a scanner
 * must pull what it has not scanned yet); Meridian's own services always.
 * Everyone else, anonymous pulls from a public project included, is judged.
 */
import Type, { type Static } from "typebox";
import Value from "typebox/value";
import { type Envelope, PROJECT_NAME, ROBOT_NAME } from "./event-types.js";
import { type GateConfig, parseGateConfig } from "./gates.js";

const strict = { additionalProperties: false } as const;

const PullPolicyBodySchema = Type.Object(
  {
    gates: Type.Record(Type.String(), Type.Unknown()),
    exempt: Type.Optional(
      Type.Object(
        {
          systemAdmins: Type.Optional(Type.Boolean()),
          robots: Type.Optional(Type.Array(Type.String(), { maxItems: 256 })),
        },
        strict,
      ),
    ),
  },
  strict,
);
type PullPolicyBody = Static<typeof PullPolicyBodySchema>;

export interface PullPolicy {
  project: string;
  gates: GateConfig;
  exempt: { systemAdmins: boolean; robots: string[] };
}

/** A project's block-pull policy, normalized (`parsePullPolicy`); replaces the last (an event). */
export interface PullPolicySet extends Envelope {
  type: "pull-policy.set";
  policy: PullPolicy;
}
export interface PullPolicyDeleted extends Envelope {
  type: "pull-policy.deleted";
  project: string;
}

/** The gate names a pull policy may use. */
export const PULL_GATES = ["signature", "vulnerabilities", "annotations"] as const;

/**
 * A project's pull policy from its document (`{gates, exempt?}`), normalized
 * (robots sorted and unique, `systemAdmins` explicit); throws one Error
 * listing every problem, each naming its key.
 */
export function parsePullPolicy(project: string, value: unknown): PullPolicy {
  const problems: string[] = [];
  if (!PROJECT_NAME.test(project))
    problems.push(`project: ${JSON.stringify(project.slice(0, 64))} is not a project name`);
  if (!Value.Check(PullPolicyBodySchema, value)) {
    for (const e of Value.Errors(PullPolicyBodySchema, value)) {
      const path = ["policy", ...e.instancePath.split("/").slice(1)].join(".");
      if (e.keyword === "additionalProperties") {
        const extra = (e.params as { additionalProperties?: string[] }).additionalProperties ?? [];
        for (const k of extra) problems.push(`${path}: unknown key "${k}"`);
      } else if (e.keyword === "required") {
        const missing = (e.params as { requiredProperties?: string[] }).requiredProperties ?? [];
        for (const k of missing) problems.push(`${path}.${k}: missing`);
      } else problems.push(`${path}: ${e.message}`);
    }
    throw new Error(`invalid pull policy: ${[...new Set(problems)].join("; ")}`);
  }
  const body = value as PullPolicyBody;
  let gates: GateConfig = {};
  if ("minAge" in body.gates)
    problems.push("gates.minAge: not a pull gate (a pull by digest has no tag to age)");
  const { minAge: _ignored, ...rest } = body.gates;
  try {
    gates = parseGateConfig(rest, "gates");
  } catch (err) {
    problems.push(...(err as Error).message.replace(/^invalid gate configuration: /, "").split("; "));
  }
  if (Object.keys(rest).length === 0) problems.push(`gates: name at least one of ${PULL_GATES.join(", ")}`);
  const robots = [...new Set(body.exempt?.robots ?? [])].sort();
  for (const r of robots)
    if (!ROBOT_NAME.test(r))
      problems.push(`exempt.robots: ${JSON.stringify(r.slice(0, 80))} is not a robot name (robot$…)`);
  if (problems.length > 0) throw new Error(`invalid pull policy: ${problems.join("; ")}`);
  return { project, gates, exempt: { systemAdmins: body.exempt?.systemAdmins ?? true, robots } };
}

/** Who asks, as far as exemptions go. */
export interface Puller {
  kind: "user" | "robot" | "anonymous" | "service";
  name: string;
  systemAdmin: boolean;
}

/** Whether `who` pulls without the policy's gates, and why (for the log). */
export function exemption(policy: PullPolicy, who: Puller): string | undefined {
  if (who.kind === "service") return "a Meridian service";
  if (who.kind === "user" && who.systemAdmin && policy.exempt.systemAdmins) return "a system admin";
  if (who.kind === "robot" && policy.exempt.robots.includes(who.name)) return "an exempted robot";
  return undefined;
}
