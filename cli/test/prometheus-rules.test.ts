/**
 * deploy/prometheus/rules.yml, the mesh's alerting rules, checked by Debian's
 * promtool (installed by `scripts/bootstrap.mjs --test`): `promtool check
 * rules` accepts the file and `promtool test rules` passes
 * deploy/prometheus/rules.test.yml. Every alert carries a severity and
 * says what to do, and its unit tests have it both firing and not firing.
 * Broken copies must fail, so the checks cannot pass vacuously. (That each
 * metric the rules name is one Meridian exports is checked against a real
 * mesh in prometheus-live.test.ts.)
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { parse } from "yaml";
import { cleanupStack, REPO_ROOT, tempDir } from "../../testing/harness.js";

const RULES_DIR = join(REPO_ROOT, "deploy", "prometheus");

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleTest {
  alert_rule_test?: Array<{ eval_time: string; alertname: string; exp_alerts?: unknown[] }>;
}

/** promtool's exit code and everything it printed. */
function promtool(args: string[], cwd: string): { code: number | null; out: string } {
  const r = spawnSync("promtool", args, { cwd, encoding: "utf8", timeout: 60_000 });
  if (r.error !== undefined) throw r.error;
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

const check = (dir: string) => promtool(["check", "rules", "rules.yml"], dir);
const unit = (dir: string) => promtool(["test", "rules", "rules.test.yml"], dir);

function alerts(dir = RULES_DIR): Rule[] {
  const doc = parse(readFileSync(join(dir, "rules.yml"), "utf8")) as { groups: Array<{ rules: Rule[] }> };
  return doc.groups.flatMap((g) => g.rules).filter((r) => r.alert !== undefined);
}

test("promtool check rules accepts deploy/prometheus/rules.yml", () => {
  const r = check(RULES_DIR);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, new RegExp(`SUCCESS: ${alerts().length} rules found`));
});

test("promtool test rules passes deploy/prometheus/rules.test.yml", () => {
  const r = unit(RULES_DIR);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /SUCCESS/);
});

test("the alerts the issue asks for, each with a severity and annotations saying what to do", () => {
  const names = alerts().map((a) => a.alert!);
  for (const wanted of [
    "MeridianReplicationLagHigh",
    "MeridianReplicationBacklogGrowing",
    "MeridianPeerDown",
    "MeridianDeleteBreakerTripped",
    "MeridianRegionRefusingWrites",
    "MeridianDiskNearlyFull",
    "MeridianProjectQuotaNearlyFull",
  ])
    assert.ok(names.includes(wanted), `${wanted} missing from rules.yml`);
  assert.equal(new Set(names).size, names.length, "alert names are unique");
  for (const a of alerts()) {
    assert.match(a.labels?.severity ?? "", /^(warning|critical)$/, `${a.alert}: severity`);
    assert.ok((a.annotations?.summary ?? "").length > 10, `${a.alert}: summary`);
    // What to do: a command to run, or something to check.
    assert.match(
      a.annotations?.description ?? "",
      /`meridian |Check|Restart|Look at/,
      `${a.alert}: description`,
    );
  }
});

test("every alert is unit-tested firing and not firing", () => {
  const doc = parse(readFileSync(join(RULES_DIR, "rules.test.yml"), "utf8")) as { tests: RuleTest[] };
  const cases = doc.tests.flatMap((t) => t.alert_rule_test ?? []);
  const names = new Set(alerts().map((a) => a.alert!));
  for (const c of cases)
    assert.ok(names.has(c.alertname), `rules.test.yml tests ${c.alertname}, not in rules.yml`);
  for (const name of names) {
    const mine = cases.filter((c) => c.alertname === name);
    assert.ok(
      mine.some((c) => (c.exp_alerts ?? []).length > 0),
      `${name}: no test case where it fires`,
    );
    assert.ok(
      mine.some((c) => (c.exp_alerts ?? []).length === 0),
      `${name}: no test case where it does not fire`,
    );
  }
});

test("broken copies fail promtool: a bad expression, a threshold the tests contradict", (t) => {
  const dir = tempDir(cleanupStack(t));
  const copy = (name: string, file: string, edit: (text: string) => string) => {
    const to = join(dir, name);
    cpSync(RULES_DIR, to, { recursive: true });
    const before = readFileSync(join(to, file), "utf8");
    const after = edit(before);
    assert.notEqual(after, before, `${name}: the edit changed nothing`);
    writeFileSync(join(to, file), after);
    return to;
  };
  const badExpr = copy("bad-expr", "rules.yml", (s) =>
    s.replace(
      "max by (region, peer) (meridian_peer_up) == 0",
      "max by (region, peer) (meridian_peer_up == 0",
    ),
  );
  const r1 = check(badExpr);
  assert.notEqual(r1.code, 0, r1.out);
  assert.match(r1.out, /parse error|unclosed/i);
  // Disk alert at 1% free instead of 10%: the test's 5% store no longer fires.
  const threshold = copy("threshold", "rules.yml", (s) => s.replace(") < 0.10", ") < 0.01"));
  assert.equal(check(threshold).code, 0);
  const r2 = unit(threshold);
  assert.notEqual(r2.code, 0, r2.out);
  assert.match(r2.out, /FAILED[\s\S]*MeridianDiskNearlyFull/);
});
