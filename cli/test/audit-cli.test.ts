/**
 * `meridian audit` (cli/audit.ts) against real admin endpoints: regions a and
 * b each run an AuditLog on a real nats-server behind GET /admin/v1/audit
 * (fastify on a real port); region c is in the mesh but nothing listens
 * there. The command merges a and b by time, names c on stderr and exits 1;
 * --region, filters, --limit, --json and usage errors.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import Fastify from "fastify";
import { AuditLog, type AuditRecord } from "../../node/audit.js";
import { auditRoutes } from "../../node/http/audit-routes.js";
import { handleError } from "../../node/http/errors.js";
import {
  cleanupStack,
  eventually,
  freePort,
  silentLogger,
  startTestNats,
  tempDir,
} from "../../testing/harness.js";
import { UsageError } from "../admin-client.js";
import { audit, auditSearch, auditTable, mergeAuditRecords } from "../audit.js";

const cleanup = cleanupStack({ after });
let dataDir: string;
const logs = new Map<string, AuditLog>();

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const code = await audit([...args, "--data", dataDir], {
    stdout: (t) => {
      stdout += t;
    },
    stderr: (t) => {
      stderr += t;
    },
  });
  return { code, stdout, stderr };
}

/** Data rows of the table (the header dropped), as trimmed cells. */
function rows(stdout: string): string[][] {
  return stdout
    .trimEnd()
    .split("\n")
    .slice(1)
    .map((line) => line.split(/\s{2,}/));
}

describe("meridian audit", () => {
  before(async () => {
    const nats = await startTestNats(cleanup);
    dataDir = tempDir(cleanup, "meridian-audit-cli-");
    const regions = [];
    for (const name of ["a", "b"]) {
      const log = await AuditLog.open({ servers: [nats.url], region: name, logger: silentLogger });
      cleanup(() => log.close());
      await log.ready();
      logs.set(name, log);
      const app = Fastify();
      await app.register(
        async (admin) => {
          admin.setErrorHandler(handleError);
          await auditRoutes(admin, log, name);
        },
        { prefix: "/admin/v1" },
      );
      cleanup(() => app.close());
      const url = await app.listen({ host: "127.0.0.1", port: 0 });
      regions.push({ name, registry: url, nats: nats.url, grpc: "127.0.0.1:1" });
    }
    const dead = await freePort();
    regions.push({ name: "c", registry: `http://127.0.0.1:${dead}`, nats: nats.url, grpc: "127.0.0.1:1" });
    writeFileSync(join(dataDir, "mesh.json"), JSON.stringify({ regions, insecure: true }));

    // a1, b1, a2, b2, a3 — interleaved in time across the two regions.
    const a = logs.get("a")!;
    const b = logs.get("b")!;
    const order: Array<[AuditLog, string, "pull" | "push" | "login.failed"]> = [
      [a, "a1", "push"],
      [b, "b1", "pull"],
      [a, "a2", "pull"],
      [b, "b2", "login.failed"],
      [a, "a3", "pull"],
    ];
    for (const [log, ref, action] of order) {
      log.record({
        actor: ref.startsWith("a") ? "alice" : "bob",
        kind: "user",
        action,
        address: "10.9.9.9",
        repo: "team/app",
        reference: ref,
        status: action === "login.failed" ? 401 : 200,
        ...(action === "login.failed" ? { detail: "bad password" } : {}),
      });
      await new Promise((r) => setTimeout(r, 5));
    }
    await eventually(async () => (await a.query({})).length === 3 && (await b.query({})).length === 2);
  });

  test("every region merged by time; an unreachable region on stderr, exit 1", async () => {
    const r = await run([]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^meridian audit: cannot reach region c at http:\/\/127\.0\.0\.1:\d+/m);
    const lines = r.stdout.trimEnd().split("\n");
    assert.match(lines[0]!, /^time\s+region\s+actor\s+action\s+artifact\s+status\s+address\s+detail$/);
    const body = rows(r.stdout);
    assert.deepEqual(
      body.map((row) => [row[1], row[2], row[3], row[4], row[5], row[6]]),
      [
        ["a", "alice", "push", "team/app:a1", "200", "10.9.9.9"],
        ["b", "bob", "pull", "team/app:b1", "200", "10.9.9.9"],
        ["a", "alice", "pull", "team/app:a2", "200", "10.9.9.9"],
        ["b", "bob", "login.failed", "team/app:b2", "401", "10.9.9.9"],
        ["a", "alice", "pull", "team/app:a3", "200", "10.9.9.9"],
      ],
    );
    assert.equal(body[3]![7], "bad password");
    for (const row of body) assert.match(row[0]!, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
  });

  test("--region asks one region; --json; filters and --limit apply across regions", async () => {
    let r = await run(["--region", "b", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    const doc = JSON.parse(r.stdout) as { records: AuditRecord[]; unreachable: unknown[] };
    assert.deepEqual(
      doc.records.map((x) => [x.region, x.reference]),
      [
        ["b", "b1"],
        ["b", "b2"],
      ],
    );
    assert.deepEqual(doc.unreachable, []);

    r = await run(["--json", "--action", "pull", "--since", "1h"]);
    assert.equal(r.code, 1);
    const pulls = JSON.parse(r.stdout) as { records: AuditRecord[]; unreachable: Array<{ region: string }> };
    assert.deepEqual(
      pulls.records.map((x) => x.reference),
      ["b1", "a2", "a3"],
    );
    assert.deepEqual(
      pulls.unreachable.map((u) => u.region),
      ["c"],
    );

    r = await run(["--limit", "2", "--region", "a"]);
    assert.equal(r.code, 0);
    assert.deepEqual(
      rows(r.stdout).map((row) => row[4]),
      ["team/app:a2", "team/app:a3"],
    );

    r = await run(["--actor", "nobody", "--region", "a"]);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, "no audit records\n");

    r = await run(["--until", "2000-01-01T00:00:00Z", "--region", "a", "--json"]);
    assert.deepEqual(JSON.parse(r.stdout).records, []);
  });

  test("usage errors exit 2 before asking any region", async () => {
    for (const [args, message] of [
      [["--since", "yesterday"], /invalid --since "yesterday"/],
      [["--action", "pulled"], /--action: want one of pull, push, delete, login, login\.failed, admin/],
      [["--limit", "0"], /--limit: a whole number from 1 to 10000/],
      [["--since", "1h", "--until", "2h"], /--since is after --until/],
      [["--region", "zz"], /region "zz" is not in the mesh/],
      [["--bogus"], /Unknown option '--bogus'/],
      [["extra"], /Unexpected argument 'extra'/],
    ] as const) {
      const r = await run([...args]);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.equal(r.stdout, "");
    }
  });
});

describe("audit helpers", () => {
  const rec = (region: string, at: string, ref: string): AuditRecord => ({
    at,
    region,
    actor: "x",
    kind: "robot",
    action: "pull",
    address: "::1",
    repo: "r",
    reference: ref,
    status: 200,
  });

  test("mergeAuditRecords orders by time then region, and keeps the newest up to the limit", () => {
    const a = [rec("a", "2024-01-01T00:00:01.000Z", "1"), rec("a", "2024-01-01T00:00:03.000Z", "3")];
    const b = [rec("b", "2024-01-01T00:00:02.000Z", "2"), rec("b", "2024-01-01T00:00:03.000Z", "4")];
    assert.deepEqual(
      mergeAuditRecords([b, a], 10).map((r) => r.reference),
      ["1", "2", "3", "4"],
    );
    assert.deepEqual(
      mergeAuditRecords([a, b], 2).map((r) => r.reference),
      ["3", "4"],
    );
    assert.deepEqual(mergeAuditRecords([], 5), []);
  });

  test("auditSearch resolves relative times once and checks every option", () => {
    const now = new Date("2024-05-10T12:00:00.000Z");
    assert.equal(
      auditSearch({ since: "2h", until: "30m", actor: "al ice", repo: "a/b" }, now).toString(),
      "since=2024-05-10T10%3A00%3A00.000Z&until=2024-05-10T11%3A30%3A00.000Z&actor=al+ice&repo=a%2Fb&limit=1000",
    );
    assert.throws(() => auditSearch({ actor: "" }, now), UsageError);
    assert.throws(() => auditSearch({ limit: "abc" }, now), UsageError);
  });

  test("auditTable shows repo:tag, repo@digest, and the kind of robots and services", () => {
    const digest = `sha256:${"b".repeat(64)}`;
    const text = auditTable([
      rec("a", "2024-01-01T00:00:01.000Z", "v1"),
      { ...rec("a", "2024-01-01T00:00:02.000Z", digest), kind: "service", actor: "replicator" },
      { ...rec("a", "2024-01-01T00:00:03.000Z", "x"), repo: undefined, reference: undefined, kind: "user" },
    ]);
    const body = rows(text);
    assert.deepEqual(
      body.slice(0, 2).map((row) => [row[2], row[4]]),
      [
        ["x (robot)", "r:v1"],
        ["replicator (service)", `r@${digest}`],
      ],
    );
    // No repository: the artifact cell is blank.
    const line = text.split("\n")[3]!;
    assert.match(line, /^2024-01-01T00:00:03\.000Z\s+a\s+x\s+pull\s+200\s+::1$/);
    assert.equal(line.indexOf("200"), text.split("\n")[0]!.indexOf("status"));
  });
});
