#!/usr/bin/env node
// Makes a fresh checkout runnable; `npm start` and `npm test` run it first.
// Uses only Node's standard library (nothing is installed yet when it runs).
//
//   1. npm dependencies: `npm install` (which follows package-lock.json) when node_modules is
//      missing or older than the lock. Not `npm ci`: with npm's omit-lockfile-registry-resolved
//      setting the lock lacks other platforms' optional packages, and `npm ci` refuses it;
//   2. the TypeScript build into dist/ when any source is newer than the last build;
//   3. system tools from Debian's packages: nats-server and openssl (mesh certificates) always;
//      skopeo and podman with --test, and docker-compose (cli/test/deploy-compose.test.ts runs
//      `docker-compose config` on deploy/compose; no engine is needed), chromium (the dashboard's
//      tests, through puppeteer-core), prometheus (promtool and a real scrape) and docker-registry
//      (the external registry of the endpoint tests) and slapd + ldap-utils (LDAP sign-in) with --test;
//      docker-registry, wrk and curl with --bench. As root they are installed with apt-get;
//      otherwise the script stops and prints the apt-get command to run.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const args = new Set(process.argv.slice(2));
const say = (msg) => process.stderr.write(`bootstrap: ${msg}\n`);

function run(cmd, argv, options = {}) {
  const r = spawnSync(cmd, argv, { cwd: root, stdio: ["ignore", "inherit", "inherit"], ...options });
  if (r.status !== 0) {
    say(`failed: ${cmd} ${argv.join(" ")}`);
    process.exit(r.status ?? 1);
  }
}

function newest(path) {
  if (!existsSync(path)) return 0;
  const s = statSync(path);
  if (!s.isDirectory()) return s.mtimeMs;
  let t = 0;
  for (const entry of readdirSync(path)) {
    if (entry === "node_modules" || entry === "dist" || entry.startsWith(".")) continue;
    t = Math.max(t, newest(join(path, entry)));
  }
  return t;
}

// 1. npm dependencies
const lock = join(root, "package-lock.json");
const installed = join(root, "node_modules", ".package-lock.json");
if (!existsSync(installed) || statSync(installed).mtimeMs < statSync(lock).mtimeMs) {
  say("installing npm dependencies");
  run("npm", ["install", "--no-audit", "--no-fund"]);
}

// 2. build
const built = join(root, "dist", ".tsbuildinfo");
const sources = Math.max(
  ...[
    "protocol",
    "node",
    "cli",
    "testing",
    "benchmarks",
    "chaos",
    "control-plane",
    "mesh-client",
    "replication",
    "tsconfig.json",
    "package-lock.json",
  ].map((p) => newest(join(root, p))),
);
if (!existsSync(built) || statSync(built).mtimeMs < sources) {
  say("building (tsc)");
  run(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json"]);
}

// 3. system tools
const tools = [
  ["nats-server", "nats-server"],
  ["openssl", "openssl"],
];
if (args.has("--test") || args.has("--bench")) tools.push(["skopeo", "skopeo"]);
// podman: a second real client for the login flows (node/test/auth.test.ts); no engine is run.
if (args.has("--test")) tools.push(["podman", "podman"]);
// docker-compose: `docker-compose config` validates deploy/compose (cli/test/deploy-compose.test.ts).
if (args.has("--test")) tools.push(["docker-compose", "docker-compose"]);
// chromium: the dashboard's tests drive it headless through puppeteer-core (nothing downloads a browser);
// prometheus: promtool checks and unit-tests deploy/prometheus's rules, and one test scrapes a local mesh.
if (args.has("--test"))
  tools.push(["chromium", "chromium"], ["promtool", "prometheus"], ["prometheus", "prometheus"]);
// docker-registry: CNCF Distribution, the external registry of the endpoint, import and promotion tests
// (testing/distribution.ts) and the benchmarks' side-by-side baseline.
if (args.has("--test") || args.has("--bench")) tools.push(["docker-registry", "docker-registry"]);
if (args.has("--bench")) tools.push(["wrk", "wrk"], ["curl", "curl"]);
// slapd + ldap-utils: the directory of the LDAP sign-in tests and benchmark (testing/ldap.ts loads its
// LDIF with ldapadd).
if (args.has("--test") || args.has("--bench")) tools.push(["slapd", "slapd"], ["ldapadd", "ldap-utils"]);
const has = (bin) => spawnSync("sh", ["-c", `command -v ${bin}`], { stdio: "ignore" }).status === 0;
const missing = tools.filter(([bin]) => !has(bin)).map(([, pkg]) => pkg);
if (missing.length > 0) {
  const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
  if (!isRoot) {
    say(`missing Debian packages: ${missing.join(" ")}`);
    say(`install them with:  sudo apt-get update && sudo apt-get install -y ${missing.join(" ")}`);
    process.exit(1);
  }
  say(`installing Debian packages: ${missing.join(" ")}`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  run("apt-get", ["update", "-qq"], { env });
  run("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...missing], { env });
}
