/**
 * Vulnerability reports attached to an image as referrers, read into one
 * list of findings (pure). Two formats:
 *
 * - SARIF 2.1.0 (`runs[].results[]`): a finding's severity is, first found,
 *   the result's `properties["security-severity"]`, its rule's (by `ruleId`
 *   or `ruleIndex` in `runs[].tool.driver.rules`), then its `level`
 *   (error → high, warning → medium, note → low, none → none). A
 *   security-severity is a CVSS score: ≥ 9 critical, ≥ 7 high, ≥ 4 medium,
 *   > 0 low.
 * - an in-toto statement of predicateType `https://cosign.sigstore.dev/attestation/vuln/v1`
 *   (what `cosign attest --type vuln` writes), bare or inside a DSSE envelope
 *   (`{payloadType, payload: base64}`); `predicate.scanner.result` is the
 *   scanner's own report: Trivy JSON (`Results[].Vulnerabilities[].Severity`),
 *   Grype JSON (`matches[].vulnerability.severity`) or a plain
 *   `vulnerabilities[]` / `findings[]` list of `{id, severity}`.
 *
 * A report that is not one of these, or is missing the parts named, is
 * malformed: `parseVulnReport` says why, and the gate fails on it (a
 * report nobody can read never passes).
 */

export const SEVERITIES = ["none", "unknown", "low", "medium", "high", "critical"] as const;
export type Severity = (typeof SEVERITIES)[number];

export const VULN_PREDICATE = "https://cosign.sigstore.dev/attestation/vuln/v1";

export interface Finding {
  id: string;
  severity: Severity;
}

export function severityRank(s: Severity): number {
  return SEVERITIES.indexOf(s);
}

/** The findings of a report's bytes, or why it cannot be read. */
export function parseVulnReport(bytes: Uint8Array): { findings: Finding[] } | { malformed: string } {
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch {
    return { malformed: "not JSON" };
  }
  if (!isObject(doc)) return { malformed: "not a JSON object" };
  if (typeof doc.payloadType === "string" && typeof doc.payload === "string") {
    try {
      doc = JSON.parse(Buffer.from(doc.payload, "base64").toString("utf8"));
    } catch {
      return { malformed: "DSSE envelope whose payload is not base64 JSON" };
    }
    if (!isObject(doc)) return { malformed: "DSSE payload is not a JSON object" };
  }
  if (typeof doc.version === "string" && Array.isArray(doc.runs)) return sarif(doc.runs);
  if (doc.predicateType === VULN_PREDICATE) return intoto(doc.predicate);
  if (typeof doc.predicateType === "string")
    return { malformed: `in-toto predicateType ${doc.predicateType}, not ${VULN_PREDICATE}` };
  return { malformed: "neither SARIF 2.1.0 nor an in-toto vulnerability attestation" };
}

function sarif(runs: unknown[]): { findings: Finding[] } | { malformed: string } {
  const findings: Finding[] = [];
  for (const [r, run] of runs.entries()) {
    if (!isObject(run) || !Array.isArray(run.results))
      return { malformed: `SARIF runs[${r}] has no results list` };
    const rules = (run.tool as { driver?: { rules?: unknown } } | undefined)?.driver?.rules;
    const ruleList = Array.isArray(rules) ? rules : [];
    for (const [i, result] of run.results.entries()) {
      if (!isObject(result)) return { malformed: `SARIF runs[${r}].results[${i}] is not an object` };
      const rule =
        typeof result.ruleIndex === "number"
          ? ruleList[result.ruleIndex]
          : ruleList.find((x) => isObject(x) && x.id === result.ruleId);
      const severity =
        cvss((result.properties as Record<string, unknown> | undefined)?.["security-severity"]) ??
        cvss(
          (rule as { properties?: Record<string, unknown> } | undefined)?.properties?.["security-severity"],
        ) ??
        levelSeverity(result.level);
      if (severity === undefined)
        return { malformed: `SARIF runs[${r}].results[${i}] has level ${JSON.stringify(result.level)}` };
      findings.push({ id: String(result.ruleId ?? `runs[${r}].results[${i}]`), severity });
    }
  }
  return { findings };
}

function cvss(value: unknown): Severity | undefined {
  if (value === undefined) return undefined;
  const n = typeof value === "number" ? value : Number.parseFloat(String(value));
  if (!Number.isFinite(n)) return undefined;
  return n >= 9 ? "critical" : n >= 7 ? "high" : n >= 4 ? "medium" : n > 0 ? "low" : "none";
}

/** SARIF's default level is "warning" (§3.27.10). */
function levelSeverity(level: unknown): Severity | undefined {
  switch (level ?? "warning") {
    case "error":
      return "high";
    case "warning":
      return "medium";
    case "note":
      return "low";
    case "none":
      return "none";
    default:
      return undefined;
  }
}

function intoto(predicate: unknown): { findings: Finding[] } | { malformed: string } {
  const result = (predicate as { scanner?: { result?: unknown } } | undefined)?.scanner?.result;
  if (!isObject(result))
    return { malformed: "in-toto vulnerability attestation without predicate.scanner.result" };
  const list: { id: unknown; severity: unknown }[] = [];
  if (Array.isArray(result.Results)) {
    for (const target of result.Results)
      for (const v of (isObject(target) && Array.isArray(target.Vulnerabilities)
        ? target.Vulnerabilities
        : []) as {
        VulnerabilityID?: unknown;
        Severity?: unknown;
      }[])
        list.push({ id: v?.VulnerabilityID, severity: v?.Severity });
  } else if (Array.isArray(result.matches)) {
    for (const m of result.matches as { vulnerability?: { id?: unknown; severity?: unknown } }[])
      list.push({ id: m?.vulnerability?.id, severity: m?.vulnerability?.severity });
  } else if (Array.isArray(result.vulnerabilities) || Array.isArray(result.findings)) {
    for (const v of (result.vulnerabilities ?? result.findings) as { id?: unknown; severity?: unknown }[])
      list.push({ id: v?.id, severity: v?.severity });
  } else {
    return { malformed: "scanner.result is not a Trivy, Grype or {vulnerabilities:[…]} report" };
  }
  const findings: Finding[] = [];
  for (const [i, v] of list.entries()) {
    const raw = typeof v.severity === "string" ? v.severity.toLowerCase() : undefined;
    const severity = raw === "negligible" ? "low" : raw; // Grype's lowest
    if (severity === undefined || !(SEVERITIES as readonly string[]).includes(severity))
      return { malformed: `finding ${i} has severity ${JSON.stringify(v.severity)}` };
    findings.push({ id: String(v.id ?? `finding ${i}`), severity: severity as Severity });
  }
  return { findings };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
