/**
 * A real Prometheus (Debian's /usr/bin/prometheus, installed by
 * `scripts/bootstrap.mjs --test`) scraping a real two-region mesh
 * (testing/mesh.ts startMesh) every second, with deploy/prometheus/rules.yml
 * loaded: an image pushed into a shows up, once b has it, as a→b
 * replication lag read back through Prometheus' HTTP API; every target is
 * up; every rule is loaded and evaluates cleanly, none firing on a healthy
 * mesh; with b's peer held down, the alerts for it turn pending (their
 * `for` is minutes: pending is where real data meets the expressions). The Grafana board (deploy/grafana/meridian.json) and the rules may
 * name only metrics the mesh's processes really export: the names come from
 * their /metrics pages, not from a list kept here.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { parse } from "yaml";
import { cleanupStack, eventually, freePort, REPO_ROOT, runCli, tempDir } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";
import { OciClient } from "../../testing/oci-client.js";
import { exportedNames, metricNames } from "./promql-names.js";

const RULES = join(REPO_ROOT, "deploy", "prometheus", "rules.yml");
const BOARD = join(REPO_ROOT, "deploy", "grafana", "meridian.json");
/** Made by Prometheus itself for every target, not by Meridian. */
const PROMETHEUS_MADE = new Set(["up"]);

interface Panel {
  title?: string;
  targets?: Array<{ expr?: string }>;
  panels?: Panel[];
}

test("metricNames: the names an expression selects, nothing else", () => {
  const cases: Array<[string, string[]]> = [
    [
      "histogram_quantile(0.99, sum by (src, dst, le) (rate(meridian_replication_lag_seconds_bucket[$__rate_interval])))",
      ["meridian_replication_lag_seconds_bucket"],
    ],
    ["max by (r) (a_bytes)\n / max by (r) (b_bytes) > 0.90", ["a_bytes", "b_bytes"]],
    ['up{job=~"meridian.*"} == 0', ["up"]],
    [
      'sum(rate(x_total{a="b,c}"}[5m] offset 1h)) without (instance) / on (region) group_left (x) y',
      ["x_total", "y"],
    ],
    ['a{quantile="0.99"} > 120 or b and bool c unless 1e3', ["a", "b", "c"]],
    ["sum(rate(x[$__interval])) / $metric", ["x"]],
  ];
  for (const [expr, names] of cases) assert.deepEqual(metricNames(expr), names, expr);
});

test("exportedNames: every TYPE'd metric, a histogram's and a summary's series names too", () => {
  const page = [
    "# HELP h x",
    "# TYPE h histogram",
    'h_bucket{le="1"} 0',
    "# TYPE s summary",
    "# TYPE g gauge",
    "g 1",
    "not_typed 1",
  ].join("\n");
  assert.deepEqual([...exportedNames([page])].sort(), [
    "g",
    "h",
    "h_bucket",
    "h_count",
    "h_sum",
    "s",
    "s_count",
    "s_sum",
  ]);
});

describe("Prometheus scraping a real mesh", () => {
  const cleanup = cleanupStack({ after });
  let mesh: RunningMesh;
  let prometheus: string;
  let pages: string[] = [];

  async function query(
    q: string,
  ): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>> {
    const res = await fetch(`${prometheus}/api/v1/query?query=${encodeURIComponent(q)}`);
    const body = (await res.json()) as { status: string; data: { result: [] }; error?: string };
    assert.equal(body.status, "success", `${q}: ${body.error}`);
    return body.data.result;
  }

  before(async () => {
    mesh = await startMesh(cleanup, ["a", "b"]);
    const dir = tempDir(cleanup, "meridian-prometheus-");
    // Every process's metrics page, by the job names deploy/compose/prometheus.yml uses.
    const hostOf = (url: string) => new URL(url).host;
    const regions = [...mesh.regions.values()];
    const jobs = {
      "meridian-node": regions.map((r) => hostOf(r.registry)),
      "meridian-peer": regions.map((r) => hostOf(r.metrics!.peer)),
      "meridian-worker": regions.map((r) => hostOf(r.metrics!.worker)),
      "meridian-front-door": [hostOf(mesh.frontDoor!)],
    };
    const config = {
      global: { scrape_interval: "1s", evaluation_interval: "1s", scrape_timeout: "1s" },
      rule_files: [RULES],
      scrape_configs: Object.entries(jobs).map(([job_name, targets]) => ({
        job_name,
        static_configs: [{ targets }],
      })),
    };
    writeFileSync(join(dir, "prometheus.yml"), JSON.stringify(config)); // JSON is YAML
    const port = await freePort();
    const child: ChildProcess = spawn(
      "/usr/bin/prometheus",
      [
        `--config.file=${join(dir, "prometheus.yml")}`,
        `--storage.tsdb.path=${join(dir, "tsdb")}`,
        `--web.listen-address=127.0.0.1:${port}`,
        "--log.level=warn",
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    let log = "";
    child.stderr!.on("data", (d) => {
      log = (log + d).slice(-8_000);
    });
    const exited = new Promise((resolve) => child.once("exit", resolve));
    cleanup(async () => {
      if (child.exitCode === null && child.signalCode === null) {
        process.kill(child.pid!, "SIGKILL");
        await exited;
      }
    });
    prometheus = `http://127.0.0.1:${port}`;
    await eventually(
      async () => {
        if (child.exitCode !== null) throw new Error(`prometheus exited ${child.exitCode}: ${log}`);
        return (await fetch(`${prometheus}/-/ready`).catch(() => undefined))?.status === 200;
      },
      20_000,
      100,
    );
    pages = await Promise.all(
      Object.values(jobs)
        .flat()
        .map(async (host) => (await fetch(`http://${host}/metrics`)).text()),
    );
  });

  test("every target is up", async () => {
    await eventually(async () => {
      const res = (await (await fetch(`${prometheus}/api/v1/targets`)).json()) as {
        data: { activeTargets: Array<{ health: string }> };
      };
      const t = res.data.activeTargets;
      return t.length === 7 && t.every((x) => x.health === "up");
    }, 15_000);
    const down = await query('up{job=~"meridian.*"} == 0');
    assert.deepEqual(down, []);
  });

  test("a push into a, replicated into b, shows as a→b lag through Prometheus' API", async () => {
    const a = mesh.regions.get("a")!;
    const b = mesh.regions.get("b")!;
    const image = await new OciClient(a.registry).pushRandomImage("prom/app", "v1");
    await eventually(
      async () =>
        (await fetch(`${b.registry}/v2/prom/app/manifests/v1`, { method: "HEAD" })).headers.get(
          "docker-content-digest",
        ) === image.digest,
      30_000,
      100,
    );
    const value = async (q: string) => {
      const r = await query(q);
      return r.length === 0 ? undefined : Number(r[0]!.value[1]);
    };
    // Scraped once a second: the replica's lag is there within a few scrapes.
    await eventually(
      async () => ((await value('meridian_replication_lag_seconds_count{src="a",dst="b"}')) ?? 0) >= 2,
      15_000,
      250,
    );
    const p99 = await value('meridian_replication_recent_lag_seconds{src="a",dst="b",quantile="0.99"}');
    assert.ok(p99 !== undefined && p99 > 0, `a→b recent lag p99: ${p99}`);
    const bytes = await value('meridian_replication_bytes_total{src="a",dst="b"}');
    assert.ok((bytes ?? 0) > 0, `a→b bytes copied: ${bytes}`);
    // Nothing was pushed into b: nothing replicated from it.
    assert.ok(((await value('meridian_replication_lag_seconds_count{src="b",dst="a"}')) ?? 0) === 0);
    // The worker's region label is the destination's.
    const [series] = await query('meridian_replication_lag_seconds_count{src="a",dst="b"}');
    assert.equal(series!.metric.region, "b");
    assert.equal(series!.metric.job, "meridian-worker");
  });

  test("what the alerts read, from the real processes: fences open, breakers untripped, filesystems sized", async () => {
    const rows = async (q: string) =>
      (await query(q)).map(
        (r) => ({ ...r.metric, value: Number(r.value[1]) }) as Record<string, string | number>,
      );
    // Each peer: one series per fence cause, all 0 once the other region has answered.
    await eventually(async () => {
      const fence = await rows("meridian_peer_home_writes_refused");
      return fence.length === 6 && fence.every((r) => r.value === 0);
    }, 15_000);
    assert.deepEqual(
      (await rows("meridian_peer_home_writes_refused")).map((r) => `${r.region}/${r.reason}`).sort(),
      ["a/behind_epoch", "a/cut_off", "a/starting", "b/behind_epoch", "b/cut_off", "b/starting"],
    );
    const breakers = await rows("meridian_replication_delete_breaker_tripped");
    assert.deepEqual(breakers.map((r) => `${r.src}->${r.dst}=${r.value}`).sort(), ["a->b=0", "b->a=0"]);
    const free = await rows("meridian_node_filesystem_avail_bytes / meridian_node_filesystem_size_bytes");
    assert.deepEqual(free.map((r) => `${r.region}/${r.volume}`).sort(), [
      "a/store",
      "a/view",
      "b/store",
      "b/view",
    ]);
    for (const r of free) assert.ok((r.value as number) > 0 && (r.value as number) <= 1, JSON.stringify(r));
  });

  test("every rule of rules.yml is loaded and evaluates cleanly; none fires on a healthy mesh", async () => {
    const wanted = (
      parse(readFileSync(RULES, "utf8")) as { groups: Array<{ rules: Array<{ alert: string }> }> }
    ).groups
      .flatMap((g) => g.rules.map((r) => r.alert))
      .sort();
    type Rule = { name: string; health: string; lastError?: string; state: string };
    let rules: Rule[] = [];
    await eventually(async () => {
      const res = (await (await fetch(`${prometheus}/api/v1/rules`)).json()) as {
        data: { groups: Array<{ rules: Rule[] }> };
      };
      rules = res.data.groups.flatMap((g) => g.rules);
      return rules.length === wanted.length && rules.every((r) => r.health !== "unknown");
    }, 15_000);
    assert.deepEqual(rules.map((r) => r.name).sort(), wanted);
    for (const r of rules) {
      assert.equal(r.health, "ok", `${r.name}: ${r.lastError}`);
      assert.notEqual(r.state, "firing", `${r.name} fires on a healthy mesh`);
    }
  });

  test("every metric the mesh exports is meridian_-prefixed, and _total names counters and only counters", () => {
    const types = new Map<string, string>();
    for (const page of pages)
      for (const m of page.matchAll(/^# TYPE (\S+) (\S+)$/gm)) types.set(m[1]!, m[2]!);
    assert.ok(types.size > 100, `${types.size} metrics on the pages`);
    const wrong = [...types]
      .filter(
        ([name, type]) => !name.startsWith("meridian_") || (type === "counter") !== name.endsWith("_total"),
      )
      .map(([name, type]) => `${name} (${type})`);
    assert.deepEqual(wrong, []);
  });

  test("the Grafana board and the alert rules name only metrics the mesh exports", () => {
    const exported = exportedNames(pages);
    assert.ok(exported.has("meridian_replication_lag_seconds_bucket"), "the worker's page was read");
    assert.ok(exported.has("meridian_front_door_routes_total"), "the front door's page was read");
    const wrong: string[] = [];
    const check = (where: string, expr: string) => {
      const names = metricNames(expr);
      if (names.length === 0) wrong.push(`${where}: names no metric: ${expr}`);
      for (const n of names)
        if (!exported.has(n) && !PROMETHEUS_MADE.has(n)) wrong.push(`${where}: ${n} is not exported`);
    };
    const board = JSON.parse(readFileSync(BOARD, "utf8")) as { panels: Panel[] };
    const panels = (ps: Panel[]): Panel[] => ps.flatMap((p) => [p, ...panels(p.panels ?? [])]);
    let queries = 0;
    for (const p of panels(board.panels))
      for (const t of p.targets ?? []) {
        queries++;
        check(`board panel "${p.title}"`, t.expr ?? "");
      }
    assert.ok(queries >= 20, `${queries} queries in the board`);
    const rules = parse(readFileSync(RULES, "utf8")) as {
      groups: Array<{ rules: Array<{ alert: string; expr: string }> }>;
    };
    for (const r of rules.groups.flatMap((g) => g.rules)) check(`rule ${r.alert}`, r.expr);
    assert.deepEqual(wrong, []);
    // And the check can fail: a name no process exports is caught.
    check("a misspelt query", "rate(meridian_replication_byte_total[5m])");
    assert.deepEqual(wrong, ["a misspelt query: meridian_replication_byte_total is not exported"]);
  });
  test("b's peer held down: its target, a's view of b and a's fence turn the matching alerts pending", async () => {
    const peerB = new URL(mesh.regions.get("b")!.metrics!.peer).host;
    const stopped = await runCli(["region", "stop", "b", "--only", "peer", "--data", mesh.dataDir]);
    assert.equal(stopped.code, 0, stopped.stderr);
    type Alert = { labels: Record<string, string>; state: string };
    let active: Alert[] = [];
    const has = (name: string, labels: Record<string, string>) =>
      active.some(
        (a) => a.labels.alertname === name && Object.entries(labels).every(([k, v]) => a.labels[k] === v),
      );
    // Pending, not firing: each waits its `for` (minutes) first; the expression already holds.
    await eventually(
      async () => {
        const res = (await (await fetch(`${prometheus}/api/v1/alerts`)).json()) as {
          data: { alerts: Alert[] };
        };
        active = res.data.alerts;
        return (
          has("MeridianProcessDown", { job: "meridian-peer", instance: peerB }) &&
          has("MeridianPeerDown", { region: "a", peer: "b" }) &&
          has("MeridianRegionRefusingWrites", { region: "a", reason: "cut_off" })
        );
      },
      30_000,
      250,
    ).catch(() => undefined);
    const names = active.map((a) => `${a.labels.alertname}${JSON.stringify(a.labels)} ${a.state}`);
    assert.ok(has("MeridianProcessDown", { job: "meridian-peer", instance: peerB }), names.join("\n"));
    assert.ok(has("MeridianPeerDown", { region: "a", peer: "b" }), names.join("\n"));
    assert.ok(has("MeridianRegionRefusingWrites", { region: "a", reason: "cut_off" }), names.join("\n"));
    for (const a of active) assert.equal(a.state, "pending", `${a.labels.alertname} fired at once`);
    assert.ok(!has("MeridianProcessDown", { job: "meridian-worker" }), "the workers still answer");
  });
});
