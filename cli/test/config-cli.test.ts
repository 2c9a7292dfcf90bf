/**
 * The settings schemas end to end (protocol/config-schema.ts, cli/config.ts):
 * `meridian config verify` through the real bin/meridian, a real node
 * process refusing a misspelt key at start, and the README's configuration
 * reference kept equal to what the schemas generate.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { cleanupStack, NODE_ENTRY, runCli, tempDir } from "../../testing/harness.js";
import { configReferenceMarkdown, REFERENCE_BEGIN, REFERENCE_END } from "../config.js";

const cleanup = cleanupStack({ after });
const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

function write(dir: string, name: string, value: unknown): string {
  const file = join(dir, name);
  writeFileSync(file, typeof value === "string" ? value : JSON.stringify(value));
  return file;
}

test("config verify names every unknown key and bad value with its file, and exits 1", async () => {
  const dir = tempDir(cleanup);
  const file = write(dir, "node.json", {
    listn: { port: 5000 },
    storage: { fsnyc: false },
    listen: { port: 70000 },
    fetchOnMiss: "sometimes",
  });
  const r = await runCli(["config", "verify", file], 20_000);
  assert.equal(r.code, 1, r.stderr);
  for (const want of [
    `config file ${file}: unknown setting "listn"`,
    `config file ${file}: unknown setting "storage.fsnyc"`,
    `config file ${file}: listen.port: must be <= 65535`,
    `config file ${file}: fetchOnMiss: "sometimes": one of proxy, redirect, off`,
  ])
    assert.ok(r.stderr.includes(want), `missing ${want} in:\n${r.stderr}`);
  assert.match(r.stderr, /4 problems \(node\)/);
  // Not JSON at all.
  const broken = write(dir, "broken.json", "{ listen: ");
  const b = await runCli(["config", "verify", broken], 20_000);
  assert.equal(b.code, 1);
  assert.match(b.stderr, new RegExp(`config file ${broken}: .*JSON`));
});

test("config verify accepts a good file of each kind; the environment counts only with --with-env", async () => {
  const dir = tempDir(cleanup);
  const mesh = write(dir, "mesh.json", {
    regions: [
      { name: "a", registry: "http://127.0.0.1:5000", nats: "nats://127.0.0.1:5001", grpc: "127.0.0.1:5002" },
    ],
    insecure: true,
  });
  const node = write(dir, "node.json", { region: "a", listen: { port: 5100 }, storage: { fsync: false } });
  const ok = await runCli(["config", "verify", node], 20_000);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /ok \(node\)/);
  for (const kind of ["peer", "worker", "front-door"]) {
    const file = write(dir, `${kind}.json`, kind === "front-door" ? {} : { region: "a" });
    const alone = await runCli(["config", "verify", file, "--kind", kind], 20_000);
    assert.equal(alone.code, 1, `${kind}: ${alone.stdout}`);
    assert.match(alone.stderr, /meshFile: required/);
    const withEnv = await runCli(["config", "verify", file, "--kind", kind, "--with-env"], 20_000, {
      MERIDIAN_MESH: mesh,
    });
    assert.equal(withEnv.code, 0, `${kind}: ${withEnv.stderr}`);
    const inFile = write(dir, `${kind}-mesh.json`, {
      ...(kind === "front-door" ? {} : { region: "a" }),
      meshFile: mesh,
    });
    assert.equal((await runCli(["config", "verify", inFile, "--kind", kind], 20_000)).code, 0, kind);
  }
  const unknownKind = await runCli(["config", "verify", node, "--kind", "toaster"], 20_000);
  assert.equal(unknownKind.code, 2);
  assert.match(unknownKind.stderr, /--kind must be one of node, peer, worker, front-door/);
});

test("a node refuses to start with a misspelt key in its file, naming it", async () => {
  const dir = tempDir(cleanup);
  const file = write(dir, "node.json", { storage: { fsnyc: false }, dataDir: join(dir, "data") });
  const r = spawnSync(process.execPath, [NODE_ENTRY, "--config", file], {
    encoding: "utf8",
    timeout: 20_000,
    env: { PATH: process.env.PATH ?? "" },
  });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, new RegExp(`config file ${file}: unknown setting "storage\\.fsnyc"`));
});

test("the README's configuration reference is what the schemas generate (node scripts/gen-config-docs.mjs)", () => {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const begin = readme.indexOf(REFERENCE_BEGIN);
  const end = readme.indexOf(REFERENCE_END);
  assert.ok(begin >= 0 && end > begin, "README.md has no configuration reference markers");
  const inReadme = readme.slice(begin + REFERENCE_BEGIN.length, end).trim();
  assert.equal(inReadme, configReferenceMarkdown().trim(), "stale: run `node scripts/gen-config-docs.mjs`");
  // Every setting says what it is for, and no variable means two things in one process.
  for (const table of configReferenceMarkdown().split("#### ").slice(1)) {
    const rows = table.split("\n").filter((l) => l.startsWith("| `"));
    assert.ok(rows.length > 5);
    const envs = rows.map((r) => r.split("|")[2]!.trim()).filter((e) => e !== "");
    assert.equal(new Set(envs).size, envs.length, `a variable appears twice in ${table.split("\n")[0]}`);
    for (const r of rows) assert.ok(r.split("|")[4]!.trim().length > 3, `no meaning: ${r}`);
  }
});
