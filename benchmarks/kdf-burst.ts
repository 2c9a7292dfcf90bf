/**
 * What a burst of password checks costs everyone else (issue 10, finding 3).
 *
 * One registry with authentication on; an unrelated client repeats one
 * cheap request that reads the registry's metadata (`GET /v2/NAME/tags/list`
 * of a repository that does not exist, with the admin's credentials, which
 * the registry has already verified) one after another:
 *
 *   quiet   N requests with nothing else going on;
 *   burst   the same requests while B wrong-password logins (`GET /v2/` with
 *           Basic credentials of unknown users) arrive at once, spread over
 *           A loopback source addresses (127.0.0.2 …), so that the per-address
 *           login limit lets up to 5 × A of them reach the password check;
 *           with `--known`, B wrong passwords for the registry's own user
 *           instead (the penetration test's form: one user, concurrent guesses).
 *
 * Reported per registry, medians over the runs: the unrelated request's p50
 * and p99 quiet and during the burst, the added p50, and how the burst was
 * answered (401: checked; 429: refused before any check) and how long it
 * took. Meridian checks passwords on a bounded queue (node/auth/passwords.ts);
 * Distribution (htpasswd, bcrypt cost 10) checks every one as it comes, and
 * checks the admin's password again on every request too, so its quiet
 * figure already includes one bcrypt.
 *
 *   node dist/benchmarks/kdf-burst.js [--runs N] [--burst B] [--addresses A] [--known] [--only meridian|distribution]
 *
 * Markdown on stdout; every run's figures in benchmarks/results/kdf-burst-<timestamp>.json.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { Agent, request } from "node:http";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { REPO_ROOT } from "../testing/harness.js";
import { basicAuthorization, startTarget, type Target, type TargetName } from "./servers.js";

const say = (msg: string) => process.stderr.write(`bench: ${msg}\n`);

interface Reply {
  status: number;
  ms: number;
}

function get(
  url: string,
  authorization: string,
  agent: Agent | undefined,
  localAddress?: string,
): Promise<Reply> {
  const started = process.hrtime.bigint();
  return new Promise((resolve) => {
    const req = request(
      url,
      { method: "GET", headers: { authorization }, ...(agent ? { agent } : { agent: false, localAddress }) },
      (res) => {
        res.resume();
        res.once("end", () =>
          resolve({ status: res.statusCode ?? 0, ms: Number(process.hrtime.bigint() - started) / 1e6 }),
        );
      },
    );
    req.setTimeout(120_000, () => req.destroy(new Error("timeout")));
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

interface RunFigures {
  quietP50: number;
  quietP99: number;
  burstP50: number;
  burstP99: number;
  burstRequests: number;
  burstMs: number;
  answered: Record<string, number>;
}

async function oneRun(
  target: Target,
  burst: number,
  addresses: number,
  quietCount: number,
  known: boolean,
): Promise<RunFigures> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const authorization = basicAuthorization(target.credentials!);
  const url = `${target.url}/v2/bench/absent/tags/list`;
  try {
    // Warm up: the first request verifies the credentials (Meridian then caches them).
    for (let i = 0; i < 50; i++) await get(url, authorization, agent);
    const quiet: number[] = [];
    for (let i = 0; i < quietCount; i++) quiet.push((await get(url, authorization, agent)).ms);

    const answered: Record<string, number> = {};
    const started = Date.now();
    let bursting = true;
    const flood = Promise.all(
      Array.from({ length: burst }, async (_, i) => {
        const user = known ? target.credentials!.user : `nobody-${i}`;
        const wrong = basicAuthorization({ user, password: randomBytes(8).toString("hex") });
        const reply = await get(`${target.url}/v2/`, wrong, undefined, `127.0.0.${2 + (i % addresses)}`);
        answered[reply.status] = (answered[reply.status] ?? 0) + 1;
      }),
    ).then(() => {
      bursting = false;
    });
    const during: number[] = [];
    while (bursting) during.push((await get(url, authorization, agent)).ms);
    await flood;
    return {
      quietP50: median(quiet),
      quietP99: quantile(quiet, 0.99),
      burstP50: median(during),
      burstP99: quantile(during, 0.99),
      burstRequests: during.length,
      burstMs: Date.now() - started,
      answered,
    };
  } finally {
    agent.destroy();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: "string" },
      burst: { type: "string" },
      addresses: { type: "string" },
      only: { type: "string" },
      known: { type: "boolean" },
    },
  });
  const runs = Number(values.runs ?? 3);
  const burst = Number(values.burst ?? 200);
  const addresses = Number(values.addresses ?? 40);
  if (![runs, burst, addresses].every((n) => Number.isInteger(n) && n >= 1) || addresses > 250)
    throw new Error("--runs, --burst, --addresses: positive integers (addresses ≤ 250)");
  const names = (values.only?.split(",") ?? ["meridian", "distribution"]) as TargetName[];
  const password = randomBytes(12).toString("hex");
  const raw: Record<string, RunFigures[]> = {};
  for (let run = 1; run <= runs; run++) {
    // Alternate the order between runs, as the other suites do.
    for (const name of run % 2 === 0 ? [...names].reverse() : names) {
      say(`kdf-burst: run ${run}/${runs}, ${name}`);
      const target = await startTarget(name, { auth: { password } });
      try {
        const figures = await oneRun(target, burst, addresses, 200, values.known === true);
        raw[name] = [...(raw[name] ?? []), figures];
        say(`kdf-burst: ${name}: ${JSON.stringify(figures)}`);
      } finally {
        await target.stop();
      }
    }
  }
  const fmt = (n: number) => (Number.isNaN(n) ? "-" : n < 10 ? n.toFixed(2) : n.toFixed(1));
  const lines = [
    `## KDF burst ${new Date().toISOString().slice(0, 16)} UTC — medians of ${runs} run(s), ${burst} wrong-password logins (${values.known === true ? "for the registry's own user" : "unknown users"}) from ${addresses} addresses`,
    "",
    "| registry | quiet p50 ms | quiet p99 ms | during burst p50 ms | during burst p99 ms | added p50 ms | burst answered | burst took s |",
    "|---|---:|---:|---:|---:|---:|---|---:|",
  ];
  for (const name of names) {
    const r = raw[name] ?? [];
    const pick = (f: (x: RunFigures) => number) => median(r.map(f));
    const answered = r.at(-1)?.answered ?? {};
    lines.push(
      `| ${name} | ${fmt(pick((x) => x.quietP50))} | ${fmt(pick((x) => x.quietP99))} | ${fmt(pick((x) => x.burstP50))} | ${fmt(pick((x) => x.burstP99))} | ${fmt(pick((x) => x.burstP50 - x.quietP50))} | ${Object.entries(
        answered,
      )
        .map(([status, n]) => `${n}× ${status}`)
        .join(", ")} | ${fmt(pick((x) => x.burstMs / 1000))} |`,
    );
  }
  process.stdout.write(`${lines.join("\n")}\n`);
  const dir = join(REPO_ROOT, "benchmarks", "results");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `kdf-burst-${new Date().toISOString().replaceAll(":", "-")}.json`);
  writeFileSync(file, `${JSON.stringify({ runs, burst, addresses, raw }, null, 2)}\n`);
  say(`kdf-burst: figures in ${file}`);
}

main().catch((err) => {
  process.stderr.write(`kdf-burst: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
