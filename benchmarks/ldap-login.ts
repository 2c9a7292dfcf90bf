/**
 * What an LDAP sign-in costs (issue 18): the latency of `GET /auth/token`
 * with a directory user's Basic credentials, against a real slapd
 * (testing/ldap.ts: memberof overlay, a service account, one group mapped
 * to a project role) and a Meridian node process with auth on:
 *
 *   ldap uncached    `ldap.cacheSeconds` 0: every request is a round trip
 *                    (connect, service bind, user search, user bind, unbind)
 *   ldaps uncached   the same over ldaps:// (a TLS handshake each time)
 *   ldap cached      `ldap.cacheSeconds` 60: after the first, no round trip
 *   local cached     a local user whose password the node verified before
 *                    (the scrypt result cached): the floor of a token request
 *
 * N requests one after another per case (keep-alive connection); reported
 * per case, medians over the runs: p50 and p99 in ms, and the directory
 * round trips the node counted (`meridian_ldap_signins_total`).
 *
 *   node dist/benchmarks/ldap-login.js [--runs N] [--requests R]
 *
 * Markdown on stdout; every run's figures in benchmarks/results/ldap-login-<timestamp>.json.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { Agent, request } from "node:http";
import { loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { REPO_ROOT } from "../testing/harness.js";
import { startTestLdap, type TestDirectory } from "../testing/ldap.js";
import { basicAuthorization, startTarget, type Target } from "./servers.js";

const say = (msg: string) => process.stderr.write(`bench: ${msg}\n`);
const ADMIN_PASSWORD = "bench admin password";
const DAVE = { user: "dave", password: "dave's directory password" };

type Case = "ldap uncached" | "ldaps uncached" | "ldap cached" | "local cached";
const CASES: Case[] = ["ldap uncached", "ldaps uncached", "ldap cached", "local cached"];

function get(url: string, authorization: string, agent: Agent): Promise<{ status: number; ms: number }> {
  const started = process.hrtime.bigint();
  return new Promise((resolve) => {
    const req = request(url, { method: "GET", headers: { authorization }, agent }, (res) => {
      res.resume();
      res.once("end", () =>
        resolve({ status: res.statusCode ?? 0, ms: Number(process.hrtime.bigint() - started) / 1e6 }),
      );
    });
    req.setTimeout(30_000, () => req.destroy(new Error("timeout")));
    req.once("error", () => resolve({ status: 0, ms: Number(process.hrtime.bigint() - started) / 1e6 }));
    req.end();
  });
}

function quantile(values: number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}
const median = (values: number[]) => quantile(values, 0.5);

async function roundTrips(target: Target): Promise<number> {
  const text = await (await fetch(`${target.url}/metrics`)).text();
  let total = 0;
  for (const m of text.matchAll(
    /^meridian_ldap_signins_total\{outcome="(ok|refused|unavailable)"[^}]*\} (\d+)/gm,
  ))
    total += Number(m[2]);
  return total;
}

async function measure(
  directory: TestDirectory,
  kind: Case,
  requests: number,
): Promise<{ p50: number; p99: number; roundTrips: number; failures: number }> {
  const ldaps = kind === "ldaps uncached";
  const target = await startTarget("meridian", {
    auth: { password: ADMIN_PASSWORD },
    env: {
      MERIDIAN_LDAP_URL: ldaps ? directory.ldapsUrl : directory.url,
      ...(ldaps ? { MERIDIAN_LDAP_CA_FILE: directory.caFile } : {}),
      MERIDIAN_LDAP_BIND_DN: directory.bindDN,
      MERIDIAN_LDAP_BIND_PASSWORD_FILE: directory.bindPasswordFile,
      MERIDIAN_LDAP_USER_BASE: directory.userBase,
      MERIDIAN_LDAP_GROUPS: JSON.stringify({ devs: "team:developer" }),
      MERIDIAN_LDAP_CACHE_SECONDS: kind === "ldap cached" ? "60" : "0",
    },
  });
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const authorization =
      kind === "local cached"
        ? basicAuthorization({ user: "admin", password: ADMIN_PASSWORD })
        : basicAuthorization(DAVE);
    const url = `${target.url}/auth/token?service=meridian&scope=repository:team/app:pull,push`;
    const warm = await get(url, authorization, agent); // the first: a round trip (or a scrypt) in every case
    if (warm.status !== 200) throw new Error(`${kind}: first token request answered ${warm.status}`);
    const before = await roundTrips(target);
    const times: number[] = [];
    let failures = 0;
    for (let i = 0; i < requests; i++) {
      const r = await get(url, authorization, agent);
      if (r.status !== 200) failures++;
      times.push(r.ms);
    }
    return {
      p50: median(times),
      p99: quantile(times, 0.99),
      roundTrips: (await roundTrips(target)) - before,
      failures,
    };
  } finally {
    agent.destroy();
    await target.stop();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { runs: { type: "string", default: "3" }, requests: { type: "string", default: "300" } },
  });
  const runs = Number(values.runs);
  const requests = Number(values.requests);
  const cleanups: Array<() => Promise<void> | void> = [];
  const loadBefore = loadavg()[0]!;
  const results: Record<Case, Array<Awaited<ReturnType<typeof measure>>>> = {
    "ldap uncached": [],
    "ldaps uncached": [],
    "ldap cached": [],
    "local cached": [],
  };
  try {
    const directory = await startTestLdap(
      (fn) => cleanups.push(fn),
      [{ uid: DAVE.user, password: DAVE.password, groups: ["devs"] }],
    );
    for (let run = 1; run <= runs; run++)
      for (const kind of run % 2 === 1 ? CASES : [...CASES].reverse()) {
        say(`run ${run}/${runs}: ${kind}`);
        results[kind].push(await measure(directory, kind, requests));
      }
  } finally {
    for (const fn of cleanups.reverse()) await fn();
  }
  const lines = [
    `LDAP sign-in cost: ${requests} sequential GET /auth/token per case, medians of ${runs} runs (load average ${loadBefore.toFixed(1)} before, ${loadavg()[0]!.toFixed(1)} after)`,
    "",
    "| case | p50 ms | p99 ms | directory round trips | failures |",
    "|---|---:|---:|---:|---:|",
  ];
  for (const kind of CASES) {
    const r = results[kind];
    lines.push(
      `| ${kind} | ${median(r.map((x) => x.p50)).toFixed(2)} | ${median(r.map((x) => x.p99)).toFixed(2)} | ${median(r.map((x) => x.roundTrips))} | ${r.reduce((a, x) => a + x.failures, 0)} |`,
    );
  }
  const summary = lines.join("\n");
  process.stdout.write(`${summary}\n`);
  const dir = join(REPO_ROOT, "benchmarks", "results");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `ldap-login-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  writeFileSync(
    file,
    JSON.stringify({ date: new Date().toISOString(), runs, requests, results, summary }, null, 2),
  );
  say(`results in ${file}`);
}

await main();
