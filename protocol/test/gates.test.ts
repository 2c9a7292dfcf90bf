import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { cosignSign, generateCosignKey } from "../../testing/cosign.js";
import { digestOf } from "../digest.js";
import { evaluateGates, type GateConfig, type GateEvidence, parseGateConfig } from "../gates.js";
import { parseVulnReport, VULN_PREDICATE } from "../vuln-reports.js";

const subject = digestOf("candidate");
const key = generateCosignKey();
const SARIF = "application/sarif+json";
const VULN = "application/vnd.in-toto+json";

function evidence(over: Partial<GateEvidence> = {}): GateEvidence {
  const sig = cosignSign(key.privateKey, "localhost/app", subject);
  return {
    subject,
    signatures: [
      {
        source: "sha256-x.sig",
        manifest: JSON.parse(sig.tagManifest.toString()),
        blob: (d) => (d === sig.payloadDigest ? sig.payload : undefined),
      },
    ],
    keys: new Map([["release", key.publicPem]]),
    reports: [],
    annotations: {},
    labels: {},
    now: 1_000_000,
    ...over,
  };
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v));

function sarif(results: unknown[], rules: unknown[] = []) {
  return json({ version: "2.1.0", runs: [{ tool: { driver: { name: "trivy", rules } }, results }] });
}

function intoto(result: unknown, envelope = false) {
  const statement = {
    _type: "https://in-toto.io/Statement/v0.1",
    predicateType: VULN_PREDICATE,
    subject: [{ name: "app", digest: { sha256: subject.slice(7) } }],
    predicate: { scanner: { uri: "trivy", version: "0.50", result }, metadata: {} },
  };
  if (!envelope) return json(statement);
  return json({
    payloadType: "application/vnd.in-toto+json",
    payload: json(statement).toString("base64"),
    signatures: [],
  });
}

const trivy = (...severities: string[]) => ({
  Results: [
    {
      Target: "app",
      Vulnerabilities: severities.map((s, i) => ({ VulnerabilityID: `CVE-${i}`, Severity: s })),
    },
  ],
});

const vulnGate = (failAt: "low" | "medium" | "high" | "critical", required?: boolean): GateConfig => ({
  vulnerabilities: { artifactTypes: [SARIF, VULN], failAt, ...(required === undefined ? {} : { required }) },
});

describe("signature gate", () => {
  test("passes with the configured key", () => {
    const r = evaluateGates({ signature: { keys: ["release"] } }, evidence());
    assert.deepEqual(r, {
      ok: true,
      results: [{ gate: "signature", ok: true, reason: "signature: verified with key release" }],
    });
  });
  test("a wrong key, a missing signature, an unknown key name are refused naming the gate", () => {
    const other = generateCosignKey();
    const wrong = evaluateGates(
      { signature: { keys: ["other"] } },
      evidence({ keys: new Map([["other", other.publicPem]]) }),
    );
    assert.equal(wrong.ok, false);
    assert.equal(
      wrong.results[0]?.reason,
      "signature: sha256-x.sig: signature does not verify with key other",
    );
    const none = evaluateGates({ signature: { keys: ["release"] } }, evidence({ signatures: [] }));
    assert.equal(none.results[0]?.reason, `signature: no cosign signature found for ${subject}`);
    const unknown = evaluateGates({ signature: { keys: ["nope"] } }, evidence());
    assert.equal(unknown.results[0]?.reason, "signature: key nope is not configured");
  });
  test("a signature of another digest is refused", () => {
    const r = evaluateGates({ signature: { keys: ["release"] } }, evidence({ subject: digestOf("other") }));
    assert.equal(r.ok, false);
    assert.match(
      r.results[0]?.reason ?? "",
      /^signature: sha256-x\.sig: payload names sha256:\w+ not sha256:/,
    );
  });
});

describe("vulnerability gate", () => {
  const cases: [string, Uint8Array, string, "low" | "medium" | "high" | "critical", boolean, RegExp][] = [
    [
      "SARIF error level at high",
      sarif([{ ruleId: "CVE-1", level: "error" }]),
      SARIF,
      "high",
      false,
      /1 finding\(s\) at or above high: CVE-1 \(high\)/,
    ],
    [
      "SARIF error level below critical",
      sarif([{ ruleId: "CVE-1", level: "error" }]),
      SARIF,
      "critical",
      true,
      /no finding at or above critical in 1 report/,
    ],
    [
      "SARIF default level (warning) below high",
      sarif([{ ruleId: "CVE-1" }]),
      SARIF,
      "high",
      true,
      /no finding/,
    ],
    [
      "SARIF result security-severity above",
      sarif([{ ruleId: "CVE-2", level: "note", properties: { "security-severity": "9.8" } }]),
      SARIF,
      "critical",
      false,
      /CVE-2 \(critical\)/,
    ],
    [
      "SARIF rule security-severity by ruleId",
      sarif(
        [{ ruleId: "CVE-3", level: "note" }],
        [{ id: "CVE-3", properties: { "security-severity": "7.5" } }],
      ),
      SARIF,
      "high",
      false,
      /CVE-3 \(high\)/,
    ],
    [
      "SARIF rule security-severity by ruleIndex, below",
      sarif(
        [{ ruleId: "x", ruleIndex: 0, level: "error" }],
        [{ id: "x", properties: { "security-severity": "5.0" } }],
      ),
      SARIF,
      "high",
      true,
      /no finding/,
    ],
    ["SARIF without results", sarif([]), SARIF, "low", true, /no finding at or above low/],
    [
      "in-toto Trivy at threshold",
      intoto(trivy("LOW", "MEDIUM")),
      VULN,
      "medium",
      false,
      /1 finding\(s\) at or above medium: CVE-1 \(medium\)/,
    ],
    [
      "in-toto Trivy below threshold",
      intoto(trivy("LOW", "MEDIUM", "UNKNOWN")),
      VULN,
      "high",
      true,
      /no finding/,
    ],
    [
      "in-toto Trivy in a DSSE envelope, above",
      intoto(trivy("CRITICAL"), true),
      VULN,
      "high",
      false,
      /CVE-0 \(critical\)/,
    ],
    [
      "in-toto Trivy with no vulnerabilities",
      intoto({ Results: [{ Target: "app" }] }),
      VULN,
      "low",
      true,
      /no finding/,
    ],
    [
      "in-toto Grype, negligible below low? no: counts as low",
      intoto({ matches: [{ vulnerability: { id: "G-1", severity: "Negligible" } }] }),
      VULN,
      "low",
      false,
      /G-1 \(low\)/,
    ],
    [
      "in-toto plain list",
      intoto({ vulnerabilities: [{ id: "V-1", severity: "high" }] }),
      VULN,
      "critical",
      true,
      /no finding/,
    ],
  ];
  for (const [name, bytes, type, failAt, ok, reason] of cases) {
    test(name, () => {
      const r = evaluateGates(
        vulnGate(failAt),
        evidence({ reports: [{ artifactType: type, source: "sha256:r", bytes }] }),
      );
      assert.equal(r.ok, ok);
      assert.equal(r.results[0]?.gate, "vulnerabilities");
      assert.match(r.results[0]?.reason ?? "", /^vulnerabilities: /);
      assert.match(r.results[0]?.reason ?? "", reason);
    });
  }

  const malformed: [string, Uint8Array, RegExp][] = [
    ["not JSON", Buffer.from("{"), /not JSON/],
    ["a JSON array", json([1]), /not a JSON object/],
    ["neither format", json({ hello: 1 }), /neither SARIF 2\.1\.0 nor/],
    ["SARIF run without results", json({ version: "2.1.0", runs: [{}] }), /runs\[0\] has no results list/],
    ["SARIF result of an unknown level", sarif([{ level: "fatal" }]), /has level "fatal"/],
    [
      "in-toto of another predicate",
      json({ predicateType: "https://slsa.dev/provenance/v1", predicate: {} }),
      /predicateType https:\/\/slsa\.dev/,
    ],
    [
      "in-toto without scanner.result",
      json({ predicateType: VULN_PREDICATE, predicate: { scanner: {} } }),
      /without predicate\.scanner\.result/,
    ],
    ["in-toto of an unknown scanner shape", intoto({ something: [] }), /not a Trivy, Grype/],
    ["in-toto finding without severity", intoto(trivy("")), /finding 0 has severity ""/],
    ["in-toto finding of an invented severity", intoto(trivy("SEVERE")), /finding 0 has severity "SEVERE"/],
    ["DSSE with a bad payload", json({ payloadType: "x", payload: "!!!" }), /DSSE/],
  ];
  for (const [name, bytes, reason] of malformed) {
    test(`a malformed report fails, never passes: ${name}`, () => {
      const r = evaluateGates(
        vulnGate("critical", false),
        evidence({ reports: [{ artifactType: SARIF, source: "sha256:r", bytes }] }),
      );
      assert.equal(r.ok, false);
      assert.match(r.results[0]?.reason ?? "", /^vulnerabilities: report sha256:r is malformed: /);
      assert.match(r.results[0]?.reason ?? "", reason);
      assert.equal("malformed" in parseVulnReport(bytes), true);
    });
  }

  test("no report: fails 'never scanned' when required (default), passes when not", () => {
    const other = [{ artifactType: "application/x-other", source: "s", bytes: sarif([{ level: "error" }]) }];
    const r = evaluateGates(vulnGate("high"), evidence({ reports: other }));
    assert.equal(r.ok, false);
    assert.match(r.results[0]?.reason ?? "", /^vulnerabilities: never scanned: no report of type/);
    assert.equal(evaluateGates(vulnGate("high", false), evidence()).ok, true);
  });

  test("one failing report among clean ones fails", () => {
    const reports = [
      { artifactType: SARIF, source: "a", bytes: sarif([]) },
      { artifactType: VULN, source: "b", bytes: intoto(trivy("HIGH")) },
    ];
    assert.equal(evaluateGates(vulnGate("high"), evidence({ reports })).ok, false);
  });
});

describe("annotations and minAge gates", () => {
  test("annotations from the manifest or config labels; '*' any value", () => {
    const config: GateConfig = { annotations: { "org.opencontainers.image.source": "*", team: "payments" } };
    const pass = evaluateGates(
      config,
      evidence({ annotations: { "org.opencontainers.image.source": "git" }, labels: { team: "payments" } }),
    );
    assert.equal(pass.ok, true);
    const fail = evaluateGates(config, evidence({ labels: { team: "search" } }));
    assert.equal(fail.ok, false);
    assert.equal(
      fail.results[0]?.reason,
      'annotations: org.opencontainers.image.source is missing; team is "search", not "payments"',
    );
  });
  test("minAge: held long enough, too recent, unknown", () => {
    const config: GateConfig = { minAge: { seconds: 3600 } };
    assert.equal(
      evaluateGates(config, evidence({ now: 10_000_000, tagSetAt: 10_000_000 - 3_600_000 })).ok,
      true,
    );
    const young = evaluateGates(config, evidence({ now: 10_000_000, tagSetAt: 10_000_000 - 60_000 }));
    assert.equal(young.results[0]?.reason, "minAge: tag held its digest for 60 s, less than 3600 s");
    assert.equal(
      evaluateGates(config, evidence()).results[0]?.reason,
      "minAge: when the tag was set is unknown",
    );
  });
  test("every configured gate is reported, not only the first failure", () => {
    const r = evaluateGates(
      {
        signature: { keys: ["release"] },
        vulnerabilities: { artifactTypes: [SARIF], failAt: "high" },
        annotations: { a: "*" },
        minAge: { seconds: 1 },
      },
      evidence({ signatures: [] }),
    );
    assert.deepEqual(
      r.results.map((x) => [x.gate, x.ok]),
      [
        ["signature", false],
        ["vulnerabilities", false],
        ["annotations", false],
        ["minAge", false],
      ],
    );
    assert.deepEqual(evaluateGates({}, evidence()), { ok: true, results: [] });
  });
});

describe("parseGateConfig", () => {
  test("accepts a full configuration", () => {
    const c = {
      signature: { keys: ["k"] },
      vulnerabilities: { artifactTypes: [SARIF], failAt: "high", required: false },
      annotations: { a: "b" },
      minAge: { seconds: 60 },
    };
    assert.deepEqual(parseGateConfig(c), c);
  });
  const bad: [string, unknown, RegExp][] = [
    ["an unknown gate", { signatur: {} }, /gates: unknown key "signatur"/],
    ["an unknown key in a gate", { minAge: { secs: 1 } }, /gates\.minAge: unknown key "secs"/],
    ["a missing key", { signature: {} }, /gates\.signature\.keys: missing/],
    ["an empty key list", { signature: { keys: [] } }, /gates\.signature\.keys: /],
    [
      "a bad severity",
      { vulnerabilities: { artifactTypes: ["x"], failAt: "severe" } },
      /gates\.vulnerabilities\.failAt: "severe" is not one of low, medium, high, critical/,
    ],
    ["a negative age", { minAge: { seconds: -1 } }, /gates\.minAge\.seconds: /],
    ["an annotation value that is not a string", { annotations: { a: 1 } }, /gates\.annotations\.a: /],
  ];
  for (const [name, value, reason] of bad) {
    test(`refuses ${name}, naming the key`, () => {
      assert.throws(
        () => parseGateConfig(value),
        (err: Error) => {
          assert.match(err.message, /^invalid gate configuration: /);
          assert.match(err.message, reason);
          return true;
        },
      );
    });
  }
});
