/**
 * Seeing the mesh from the CLI (issue 16, item 4), against a real three-
 * region mesh (`meridian up --regions a,b,c`), output not a terminal:
 *   - the long operations (`rebuild`, `rebuild-region`, `policy run --wait`,
 *     `gc run`) print plain progress lines (cli/progress.ts) on stderr, and
 *     their summary;
 *   - `meridian lag` shows the pushed source's lag in the other regions' rows;
 *   - with region c frozen (SIGSTOP of its four processes; resumed in
 *     cleanup), `status --watch` keeps refreshing and shows c DOWN, stops on
 *     SIGINT with exit 0, and `meridian lag` finishes within a bound, marks c
 *     and exits 1 naming it.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { waitWritable } from "../../testing/faults.js";
import { CLI_ENTRY, cleanupStack, eventually, runCli } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";
import { OCI_MANIFEST, OciClient } from "../../testing/oci-client.js";

const cleanup = cleanupStack({ after });
/** Generous: each command's own bounds make it a few seconds with a region frozen. */
const FINISHES_MS = 25_000;
/** util-linux `script`: runs a command on a pseudo-terminal. */
const SCRIPT = "/usr/bin/script";
let mesh: RunningMesh;
const client = (region: string) => new OciClient(mesh.regions.get(region)!.registry);
const meridian = (args: string[], timeoutMs = 120_000) =>
  runCli([...args, "--data", mesh.dataDir], timeoutMs);

async function digestIn(region: string, repo: string, tag: string): Promise<string | undefined> {
  const res = await client(region).fetch(`/v2/${repo}/manifests/${tag}`, {
    method: "HEAD",
    headers: { accept: OCI_MANIFEST, "cache-control": "only-if-cached" },
  });
  return res.status === 200 ? (res.headers.get("docker-content-digest") ?? undefined) : undefined;
}

const signal = (pids: number[], sig: NodeJS.Signals) => {
  for (const pid of pids) {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  }
};

/** Plain progress lines of `label` (cli/progress.ts, not a terminal): no control characters. */
function progressLines(stderr: string, label: string): string[] {
  assert.ok(!stderr.includes("\r") && !stderr.includes("\x1b"), `no control characters: ${stderr}`);
  return stderr.split("\n").filter((l) => l.startsWith(`${label}: `));
}

describe("the CLI's progress, lag matrix and status --watch on a real mesh", () => {
  let pushed: string;

  before(async () => {
    // c is frozen on purpose in the last tests: up's liveness probe would restart it (cli/supervisor.ts).
    process.env.MERIDIAN_UP_LIVENESS = "off";
    // A GC run's settle (node/data/gc.ts, 30 s by default) shortened: the test is about its progress.
    mesh = await startMesh(cleanup, ["a", "b", "c"], undefined, [], { MERIDIAN_GC_SETTLE_MS: "1000" });
    for (const r of mesh.regions.values()) await waitWritable(r.registry);
    pushed = (await client("a").pushRandomImage("apps/seen", "v1")).digest;
    for (const r of ["b", "c"])
      await eventually(async () => (await digestIn(r, "apps/seen", "v1")) === pushed, 30_000, 100);
  });

  test("lag: the pushed source's cells show a lag figure in the other regions' rows", async () => {
    // The worker's metrics page is read as it is scraped: the lag of the push is there once replicated.
    let r = await meridian(["lag"]);
    await eventually(
      async () => {
        r = await meridian(["lag"]);
        return /^b\s+\d/m.test(r.stdout) && /^c\s+\d/m.test(r.stdout);
      },
      30_000,
      500,
    );
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split("\n");
    assert.match(lines[0]!, /^dst \\ src\s+a\s+b\s+c$/);
    // Rows are destinations, columns sources: a's column holds b's and c's lag of a's push.
    assert.match(r.stdout, /^a\s+-\s+\S+\/\S+ \(\d+\)\s+\S+\/\S+ \(\d+\)$/m);
    assert.match(r.stdout, /^b\s+\d+(ms|\.\d+s)\/\d+(ms|\.\d+s) \(0\)\s+-\s+\S+ \(\d+\)$/m);
    assert.match(r.stdout, /^c\s+\d+(ms|\.\d+s)\/\d+(ms|\.\d+s) \(0\)\s+\S+ \(\d+\)\s+-$/m);
    assert.equal(r.stderr, "");

    const json = JSON.parse((await meridian(["lag", "--json"])).stdout) as {
      regions: string[];
      links: Record<
        string,
        Record<string, { lagP50Ms?: number; lagP99Ms?: number; pending?: number } | null>
      >;
      unreachable: string[];
    };
    assert.deepEqual(json.regions, ["a", "b", "c"]);
    assert.deepEqual(json.unreachable, []);
    for (const dst of ["b", "c"]) {
      const link = json.links[dst]!.a!;
      assert.equal(typeof link.lagP50Ms, "number", JSON.stringify(json));
      assert.ok(link.lagP99Ms! >= link.lagP50Ms!, JSON.stringify(link));
      assert.equal(link.pending, 0);
    }
    assert.equal(json.links.a!.a, undefined, "no diagonal");
  });

  test("gc run: plain lines of the scan and the collection on stderr, the summary on stdout", async () => {
    // Blobs no manifest links: orphans a forced run collects.
    for (let i = 0; i < 3; i++)
      await client("a").pushBlob("junk/app", Buffer.from(`orphan ${i} ${Date.now()}`));
    // GC keeps what another region's worker has not yet read (node/data/gc.ts): dry runs until
    // the orphans are collectable, each printing its scan (and never a collection).
    let dry = await meridian(["gc", "run", "--region", "a", "--now", "--dry-run"]);
    await eventually(
      async () => {
        dry = await meridian(["gc", "run", "--region", "a", "--now", "--dry-run"]);
        return /^done \(dry run\): [3-9]\d* blobs/m.test(dry.stdout);
      },
      60_000,
      500,
    );
    assert.equal(dry.code, 0, dry.stderr);
    const dryId = /^gc run (gc-\S+) in region a \(dry run\)/m.exec(dry.stdout)?.[1];
    assert.ok(dryId, dry.stdout);
    assert.match(
      progressLines(dry.stderr, `gc ${dryId} scan`).at(-1) ?? dry.stderr,
      /scan: \d+ blobs scanned(, [^,]+)*, [3-9]\d* collectable$/,
    );
    assert.doesNotMatch(dry.stderr, / collect: /, "a dry run only scans");
    const r = await meridian(["gc", "run", "--region", "a", "--now"]);
    assert.equal(r.code, 0, r.stderr);
    const id = /^gc run (gc-\S+) in region a/m.exec(r.stdout)?.[1];
    assert.ok(id, r.stdout);
    const scan = progressLines(r.stderr, `gc ${id} scan`);
    assert.ok(scan.length >= 1, r.stderr);
    assert.match(scan.at(-1)!, /^gc \S+ scan: \d+ blobs scanned(, [^,]+)*, \d+ collectable$/);
    const collect = progressLines(r.stderr, `gc ${id} collect`);
    assert.ok(collect.length >= 1, r.stderr);
    assert.match(collect.at(-1)!, /^gc \S+ collect: (\d+)\/\d+ blobs collected, \d+%/);
    assert.match(r.stdout, /^done: [1-9]\d* blobs, \d+ bytes reclaimed of \d+ scanned/m);
    const collected = Number(/^done: (\d+) blobs/m.exec(r.stdout)![1]);
    assert.equal(
      Number(/: (\d+)\//.exec(collect.at(-1)!)![1]),
      collected,
      "the last line agrees with the summary",
    );
  });

  test("policy run --wait: repositories in step and regions reported, then the summary", async () => {
    const file = join(mesh.dataDir, "observe-policy.yaml");
    // Not exclusive: the full mirror still carries everything; the run has only to confirm it.
    writeFileSync(
      file,
      'policies:\n  - name: apps-out\n    sources: [a]\n    destinations: [b, c]\n    repositories: ["apps/**"]\n    trigger: manual\n',
    );
    const applied = await meridian(["policy", "apply", file]);
    assert.equal(applied.code, 0, applied.stderr);
    const r = await meridian(["policy", "run", "apps-out", "--wait"]);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const lines = progressLines(r.stderr, "policy run apps-out");
    assert.ok(lines.length >= 1, r.stderr);
    // a→b and a→c, apps/seen each: both in step once the run is done.
    assert.match(
      lines.at(-1)!,
      /^policy run apps-out: 2\/2 repositories in step, 100%.*, 2\/2 region\(s\) reported$/,
    );
    assert.match(r.stdout, /^b: ok at /m);
    assert.match(r.stdout, /^c: ok at /m);
    assert.match(r.stdout, /^done: 2 of 2 region\(s\) ok; totals: /m);
  });

  test("rebuild-region: repositories in step with each source, then the outcome", async () => {
    const r = await meridian(["rebuild-region", "--region", "b"]);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const lines = progressLines(r.stderr, "rebuilding b");
    assert.ok(lines.length >= 1, r.stderr);
    assert.match(
      lines.at(-1)!,
      /^rebuilding b: \d+\/\d+ repositories in step(, [^,]+)*, with a \d+\/\d+, c \d+\/\d+$/,
    );
    assert.match(r.stdout, /^rebuild of b: ok after [\d.]+ s; /m);
  });

  test("on a terminal (script's pseudo-terminal): rebuild-region's bar is redrawn in place; status --watch clears and redraws", {
    skip: !existsSync(SCRIPT) && "no util-linux script",
  }, async () => {
    const inPty = (command: string, timeoutMs: number) =>
      spawnSync(SCRIPT, ["-qec", `stty cols 200 rows 50; ${command}`, "/dev/null"], {
        encoding: "utf8",
        timeout: timeoutMs,
        env: { ...process.env, TERM: "xterm" },
      });
    const meridianCmd = `${process.execPath} ${CLI_ENTRY}`;
    const rebuild = inPty(`${meridianCmd} rebuild-region --region b --data ${mesh.dataDir}`, 120_000);
    assert.equal(rebuild.status, 0, rebuild.stdout);
    const frames = rebuild.stdout.split("\r\x1b[2K").slice(1);
    assert.ok(frames.length >= 1, `drawn in place: ${JSON.stringify(rebuild.stdout)}`);
    for (const f of frames)
      assert.match(f, /^rebuilding b \[[#.]{24}\] \d+\/\d+ repositories in step {2}\d+%/);
    // The bar's line is ended before the summary.
    assert.match(rebuild.stdout, /repositories in step[^\r\n]*\r?\n(.*\r?\n)*rebuild of b: ok after/);

    // SIGINT after about 3 s (timeout keeps the command's own exit status).
    const watch = inPty(
      `timeout --preserve-status -s INT 3 ${meridianCmd} status --watch --interval 0.5 --data ${mesh.dataDir}`,
      FINISHES_MS,
    );
    assert.equal(watch.status, 0, watch.stdout);
    const screens = watch.stdout.split("\x1b[H\x1b[2J").slice(1);
    assert.ok(screens.length >= 2, `cleared and redrawn: ${JSON.stringify(watch.stdout)}`);
    for (const screen of screens.slice(0, -1))
      assert.match(screen, /^meridian status at \S+ \(every 0\.5 s; Ctrl-C to stop\)\r?\nregion\s+peer/);
  });

  test("rebuild: a node's view replayed, events applied of the log's, then the result", async () => {
    const stop = await runCli(["region", "stop", "c", "--only", "node", "--data", mesh.dataDir], 60_000);
    assert.equal(stop.code, 0, stop.stderr);
    try {
      const r = await meridian(["rebuild", "--region", "c"]);
      assert.equal(r.code, 0, r.stderr);
      const lines = progressLines(r.stderr, "rebuild of c");
      assert.ok(lines.length >= 1, r.stderr);
      assert.match(lines.at(-1)!, /^rebuild of c: (\d+)\/\1 events, 100%/);
      const result = JSON.parse(r.stdout) as { rebuilt: boolean; seq: number };
      assert.equal(result.rebuilt, true);
      assert.ok(lines.at(-1)!.startsWith(`rebuild of c: ${result.seq}/${result.seq} events`), lines.at(-1));
    } finally {
      const start = await runCli(["region", "start", "c", "--data", mesh.dataDir], 90_000);
      assert.equal(start.code, 0, start.stderr);
    }
    assert.equal(await digestIn("c", "apps/seen", "v1"), pushed, "the rebuilt view serves what it held");
  });

  test("status --watch refreshes, shows a region frozen between refreshes DOWN, and stops on SIGINT with 0", async () => {
    await waitWritable(mesh.regions.get("c")!.registry, 30_000);
    const child = spawn(
      process.execPath,
      [CLI_ENTRY, "status", "--watch", "--interval", "0.5", "--data", mesh.dataDir],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    cleanup(() => {
      child.kill("SIGKILL");
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    const snapshots = () => stdout.split(/^meridian status at /m).slice(1);
    await eventually(() => snapshots().some((s) => /^c\s+up/m.test(s)), 30_000, 100);

    const frozen = Object.values(mesh.regions.get("c")!.pids);
    assert.equal(frozen.length, 4);
    // Registered before the freeze: resumed before the mesh is stopped.
    cleanup(() => signal(frozen, "SIGCONT"));
    signal(frozen, "SIGSTOP");
    const before = snapshots().length;
    await eventually(
      () =>
        snapshots()
          .slice(before)
          .some((s) => /^c\s+DOWN/m.test(s)),
      FINISHES_MS,
      100,
    );
    // It goes on refreshing with c frozen (every refresh bounded).
    const downAt = snapshots().length;
    await eventually(() => snapshots().length >= downAt + 1, FINISHES_MS, 100);

    const stopped = Date.now();
    child.kill("SIGINT");
    const code = await exited;
    assert.ok(Date.now() - stopped < 5_000, `stopped ${Date.now() - stopped} ms after SIGINT`);
    assert.equal(code, 0, stderr);
    const all = snapshots();
    assert.ok(all.length >= 3, `${all.length} snapshots`);
    // Each after a blank line (but the first) and its time.
    assert.match(stdout, /^meridian status at \d{4}-\d\d-\d\dT[\d:.]+Z \(every 0\.5 s; Ctrl-C to stop\)$/m);
    assert.equal(
      stdout.split("\n\nmeridian status at ").length,
      all.length,
      "a blank line before every snapshot but the first",
    );
    assert.ok(!stdout.includes("\x1b"), "no control characters when not a terminal");
    const down = all.find((s) => /^c\s+DOWN/m.test(s))!;
    assert.match(down, /^meridian status: region c is unreachable/m, "the problem is in the snapshot");
    assert.match(down, /^a\s+up/m);
  });

  test("lag with c frozen: finishes within the bound, marks c and exits 1 naming it", async () => {
    const started = Date.now();
    const r = await meridian(["lag"], FINISHES_MS + 15_000);
    const ms = Date.now() - started;
    assert.ok(ms < FINISHES_MS, `lag took ${ms} ms`);
    assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /^c \(DOWN\)\s+\?\s+\?\s+-$/m, r.stdout);
    assert.match(r.stdout, /^a\s+-\s+\S+ \(\d+\)\s+\S+ \(\d+\)$/m, "a's worker still answers of c");
    assert.match(r.stderr, /^meridian lag: region c is unreachable: .*'meridian status'/m);
    assert.doesNotMatch(r.stderr, /region [ab] /);
  });
});
