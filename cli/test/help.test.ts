/**
 * `meridian help CMD` and `meridian CMD --help` (cli/main.ts) for every
 * command, through the real bin/meridian: each prints that command's usage
 * and exits 0 without running anything (`up --help` once started a mesh
 * parser that answered "Unknown option '--help'"); an unknown command is 2.
 * The commands are read from the usage table itself, so a command added
 * there is checked without touching this file.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { runCli } from "../../testing/harness.js";

/** Every command the known list must hold at least (the usage table is checked against it). */
const KNOWN = [
  "up",
  "status",
  "lag",
  "rebuild",
  "policy",
  "alerts",
  "tag",
  "undelete",
  "repo",
  "replication",
  "failover",
  "rebuild-region",
  "whoami",
  "user",
  "robot",
  "project",
  "audit",
  "config",
];

/** Every command in the usage table of `meridian help`: the first word of each entry line. */
async function usageCommands(): Promise<string[]> {
  const { stdout } = await runCli(["help"], 20_000);
  const names = stdout.split("\n").flatMap((l) => /^ {2}([a-z][\w-]*)/.exec(l)?.[1] ?? []);
  return [...new Set(names)];
}

test("the usage table names every command", async () => {
  const commands = await usageCommands();
  for (const c of KNOWN) assert.ok(commands.includes(c), `${c} is missing from the usage table`);
});

/**
 * Runs `check` for every item, at most `limit` at once: each check is a few
 * CLI starts (~0.6 s of loading modules, then nothing but a write), so one
 * after the other the ~35 commands took 40-57 s of CI, mostly one core idle.
 */
async function eachAtMost<T>(items: T[], limit: number, check: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  await Promise.all(
    Array.from({ length: Math.min(limit, queue.length) }, async () => {
      for (let item = queue.shift(); item !== undefined; item = queue.shift()) await check(item);
    }),
  );
}

test("every command in the usage table answers `help CMD` and `CMD --help` with its own usage", async () => {
  const commands = await usageCommands();
  assert.ok(commands.length >= KNOWN.length, `only ${commands.length} commands in the usage table`);
  const checked: string[] = [];
  await eachAtMost(commands, 4, async (command) => {
    const viaHelp = await runCli(["help", command], 20_000);
    assert.equal(viaHelp.code, 0, `help ${command}: ${viaHelp.stderr}`);
    assert.ok(viaHelp.stdout.startsWith(`usage: meridian ${command} `), viaHelp.stdout);
    // Its entries are there, and no other command's.
    const entries = viaHelp.stdout.split("\n").filter((l) => /^ {2}\S/.test(l));
    assert.ok(entries.length > 0, `help ${command} lists no entry`);
    for (const e of entries) assert.ok(e.startsWith(`  ${command}`), `help ${command} shows ${e}`);
    // `-h` is the same path as `--help` (main.ts): checked on one command, each CLI start costs ~0.7 s.
    for (const flag of command === commands[0] ? ["--help", "-h"] : ["--help"]) {
      const viaFlag = await runCli([command, flag], 20_000);
      assert.equal(viaFlag.code, 0, `${command} ${flag}: ${viaFlag.stderr}`);
      assert.equal(viaFlag.stdout, viaHelp.stdout);
    }
    checked.push(command);
  });
  // Every command was checked (a check that threw has failed the test above).
  assert.deepEqual(checked.sort(), [...commands].sort());
  // A subcommand with --help is the command's usage too, and nothing runs (no mesh file needed).
  const sub = await runCli(["policy", "apply", "--help"], 20_000);
  assert.equal(sub.code, 0, sub.stderr);
  assert.match(sub.stdout, /policy apply FILE/);
  assert.match(sub.stdout, /admin commands take --data DIR/);
  assert.match((await runCli(["up", "--help"], 20_000)).stdout, /--base-port N/);
});

test("help for an unknown command says so and exits 2", async () => {
  const r = await runCli(["help", "nosuch"], 20_000);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown command "nosuch"/);
  const plain = await runCli(["help"], 20_000);
  assert.equal(plain.code, 0);
  assert.match(plain.stdout, /^usage: meridian <command>/);
});
