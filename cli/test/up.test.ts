/**
 * `meridian up` as a real child process: its JSON status lines, push and pull
 * through the registries it prints, that stopping it (SIGTERM) leaves none of
 * the processes it listed behind, and that one of its processes dying is
 * restarted (also through a crash loop) while `up` keeps running (issue 13).
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { test } from "node:test";
import { processAlive, waitWritable, within } from "../../testing/faults.js";
import { type After, CLI_ENTRY, cleanupStack, eventually, tempDir } from "../../testing/harness.js";
import { OCI_MANIFEST, OciClient, sha256 } from "../../testing/oci-client.js";
import { freePortBlock } from "../../testing/ports.js";

interface RegionLine {
  region: string;
  registry: string;
  nats: string;
  pids: { nats: number; node: number };
}

interface ReadyLine {
  ready: true;
  frontDoor?: string;
  pids?: { frontDoor: number };
}

interface Up {
  child: ChildProcess;
  regions: RegionLine[];
  ready: ReadyLine;
  base: number;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr: () => string;
}

/** Start `meridian up`, read its lines up to {"ready":true}; kills whatever is left afterwards. */
async function startUp(after: After, regions: string[], data: string): Promise<Up> {
  // Every port `up` uses (cli/up.ts regionPorts, and B+5 for the front door).
  const offsets = [...regions.flatMap((_, i) => [0, 1, 2, 3, 4].map((o) => 10 * i + o)), 5];
  const base = await freePortBlock(offsets);
  const child = spawn(
    process.execPath,
    [CLI_ENTRY, "up", "--regions", regions.join(","), "--base-port", String(base), "--data", data],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let stderr = "";
  child.stderr!.on("data", (d) => {
    stderr = (stderr + d).slice(-8000);
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const lines: RegionLine[] = [];
  let ready: ReadyLine | undefined;
  after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exit;
    const pids = [...lines.flatMap((l) => [l.pids.node, l.pids.nats]), ready?.pids?.frontDoor ?? 0];
    for (const pid of pids) {
      if (pid > 0 && processAlive(pid)) process.kill(pid, "SIGKILL");
    }
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`up not ready in 60 s: ${stderr}`)), 60_000);
    void exit.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`up exited (${code ?? signal}) before ready: ${stderr}`));
    });
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const msg = JSON.parse(line) as RegionLine | ReadyLine;
      if ("ready" in msg) {
        clearTimeout(timer);
        assert.equal(msg.ready, true);
        ready = msg;
        resolve();
      } else {
        lines.push(msg);
      }
    });
  });
  for (const [i, line] of lines.entries()) {
    assert.equal(line.region, regions[i]);
    assert.equal(line.registry, `http://127.0.0.1:${base + 10 * i}`);
    assert.equal(line.nats, `nats://127.0.0.1:${base + 10 * i + 1}`);
  }
  return { child, regions: lines, ready: ready!, base, exit, stderr: () => stderr };
}

test("meridian up: one line per region, then ready with the front door; push and pull work; SIGTERM stops everything", async (t) => {
  const after = cleanupStack(t);
  const data = tempDir(after, "meridian-up-");
  const up = await startUp(after, ["a", "b"], data);
  assert.deepEqual(
    up.regions.map((r) => r.region),
    ["a", "b"],
  );
  assert.equal(up.ready.frontDoor, `http://127.0.0.1:${up.base + 5}`, "the front door, on B+5");
  const pids = [...up.regions.flatMap((r) => [r.pids.nats, r.pids.node]), up.ready.pids!.frontDoor];
  assert.equal(new Set(pids).size, 5, "five distinct processes");
  for (const pid of pids) {
    assert.ok(Number.isInteger(pid) && pid > 0);
    assert.ok(processAlive(pid), `pid ${pid} is running`);
  }

  for (const region of up.regions) {
    await waitWritable(region.registry);
    const client = new OciClient(region.registry);
    const image = await client.pushRandomImage("demo/app", `from-${region.region}`, 2, 2048);
    const res = await client.fetch(`/v2/demo/app/manifests/from-${region.region}`, {
      headers: { accept: OCI_MANIFEST },
    });
    assert.equal(res.status, 200);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), Buffer.from(JSON.stringify(image.manifest)));
    for (const blob of [image.config, ...image.layers]) {
      const b = await client.fetch(`/v2/demo/app/blobs/${blob.digest}`);
      assert.equal(b.status, 200);
      assert.equal(sha256(Buffer.from(await b.arrayBuffer())), blob.digest);
    }
    const health = (await (await client.fetch("/healthz")).json()) as { region: string };
    assert.equal(health.region, region.region);
    for (const file of ["nats.log", "node.log", "view", "store"]) {
      assert.ok(existsSync(join(data, region.region, file)), `${region.region}/${file} exists`);
    }
  }

  // The front door serves the OCI API, routing to the default region (the first: no CIDR table).
  const front = new OciClient(up.ready.frontDoor!);
  const base = await front.fetch("/v2/");
  assert.equal(base.status, 200);
  assert.equal(base.headers.get("meridian-region"), "a");
  const viaFront = await front.fetch("/v2/demo/app/manifests/from-a", { method: "HEAD" });
  assert.equal(viaFront.status, 200);
  const routed = await (await front.fetch("/metrics")).text();
  assert.match(routed, /meridian_front_door_routes_total\{client_region="a",region="a",reason="local"\} 2/);

  up.child.kill("SIGTERM");
  const exited = await within(up.exit, 20_000);
  assert.notEqual(exited, "timeout", "up stops within 20 s of SIGTERM");
  assert.deepEqual(exited, { code: 0, signal: null }, `up exits 0 (stderr: ${up.stderr()})`);
  for (const pid of pids) {
    assert.throws(
      () => process.kill(pid, 0),
      (err: NodeJS.ErrnoException) => err.code === "ESRCH",
      `pid ${pid} is gone`,
    );
  }
});

test("meridian up: a process that dies is logged and restarted on the same port; the rest keeps running; SIGTERM stops the new one too", async (t) => {
  const after = cleanupStack(t);
  const data = tempDir(after, "meridian-up-");
  const up = await startUp(after, ["solo"], data);
  assert.equal(up.ready.frontDoor, undefined, "one region: no mesh, no front door");
  const [region] = up.regions;
  process.kill(region!.pids.node, "SIGKILL");
  const current = () =>
    (
      JSON.parse(readFileSync(join(data, "up.json"), "utf8")) as {
        regions: { solo: { pids: { node: number | null } } };
      }
    ).regions.solo.pids.node;
  await eventually(
    () => {
      const pid = current();
      return pid !== null && pid !== region!.pids.node && processAlive(pid);
    },
    30_000,
    100,
  );
  assert.equal(up.child.exitCode, null, "up keeps running");
  assert.match(
    up.stderr(),
    new RegExp(`node of solo \\(pid ${region!.pids.node}\\) exited \\(SIGKILL\\); restarting`),
  );
  assert.match(up.stderr(), /last lines of .*node\.log/);
  assert.ok(processAlive(region!.pids.nats), "the nats-server was left alone");
  await waitWritable(region!.registry);
  const pushed = await new OciClient(region!.registry).pushRandomImage("demo/app", "again", 1, 1024);
  assert.ok(pushed.digest.startsWith("sha256:"));
  const restarted = current()!;
  up.child.kill("SIGTERM");
  const exited = await within(up.exit, 20_000);
  assert.deepEqual(exited, { code: 0, signal: null }, `up exits 0 (stderr: ${up.stderr()})`);
  for (const pid of [restarted, region!.pids.nats]) {
    assert.equal(processAlive(pid), false, `pid ${pid} is gone`);
  }
});

test("meridian up: a process that cannot restart (its port taken) is retried with growing backoff while up keeps running", async (t) => {
  const after = cleanupStack(t);
  const data = tempDir(after, "meridian-up-");
  const up = await startUp(after, ["solo"], data);
  const [region] = up.regions;
  const port = Number(new URL(region!.registry).port);
  process.kill(region!.pids.node, "SIGKILL");
  await eventually(() => !processAlive(region!.pids.node), 5_000, 5);
  const squatter = createServer();
  await new Promise<void>((resolve, reject) => {
    squatter.once("error", reject);
    squatter.listen(port, "127.0.0.1", () => resolve());
  });
  after(() => new Promise<void>((resolve) => squatter.close(() => resolve())));
  await eventually(
    () => (up.stderr().match(/node of solo failed to restart/g) ?? []).length >= 2,
    20_000,
    100,
  );
  assert.match(
    up.stderr(),
    /failed to restart: node of solo exited with 1 before listening.*retrying in 2 s/s,
  );
  assert.equal(up.child.exitCode, null, "up keeps running through the crash loop");
  assert.ok(processAlive(region!.pids.nats), "the nats-server keeps running");
  squatter.close();
  await waitWritable(region!.registry, 20_000);
});
