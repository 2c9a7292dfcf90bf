/**
 * Finding 5 of issue 10: slow and greedy clients against `meridian up --auth`
 * (two regions and the front door as real processes). A body that stops
 * moving is cut after the idle timeout; a request refused 401 before its
 * body was read is closed at once, however slowly its body trickles; one
 * address holding the per-client cap of connections neither gets more nor
 * stops anybody else's pull; and a client leaving in the middle of a proxied
 * upload takes the front door's request to the region with it.
 *
 * Limits are set small through the environment `up` passes on: idle 2 s,
 * headers within 3 s, 20 connections per address (the node exempts 127.0.0.1, where the front
 * door connects from; attackers here come from 127.0.0.2).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import http from "node:http";
import { connect, type Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { cleanupStack, eventually } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";

const run = promisify(execFile);
const cleanup = cleanupStack({ after });
const IDLE_MS = 2_000;
const CAP = 20;
/** Where the bug kept sockets open indefinitely, closing must happen well within this. */
const CLOSE_BOUND_MS = 12_000;

let mesh: RunningMesh;
let adminAuth: string;

before(async () => {
  // `up` passes its environment on to the nodes and the front door.
  Object.assign(process.env, {
    MERIDIAN_HTTP_IDLE_TIMEOUT_MS: String(IDLE_MS),
    MERIDIAN_SYNC_TIMEOUT_MS: "1000",
    MERIDIAN_HTTP_MAX_CONNECTIONS_PER_CLIENT: String(CAP),
    MERIDIAN_HTTP_HEADERS_TIMEOUT_MS: "3000",
  });
  mesh = await startMesh(cleanup, ["a", "b"], undefined, ["--auth"]);
  const password = readFileSync(mesh.adminPasswordFile!, "utf8").trim();
  adminAuth = `Basic ${Buffer.from(`admin:${password}`).toString("base64")}`;
});

const registry = (region: string) => mesh.regions.get(region)!.registry;

interface Raw {
  socket: Socket;
  closed: Promise<void>;
  received: () => string;
}

/** A raw TCP connection to `base` (optionally from `localAddress`), collecting what it receives. */
async function openRaw(base: string, localAddress?: string): Promise<Raw> {
  const url = new URL(base);
  const socket = connect({
    host: url.hostname,
    port: Number(url.port),
    ...(localAddress === undefined ? {} : { localAddress }),
  });
  let data = "";
  socket.on("data", (d) => {
    data += d.toString("latin1");
  });
  socket.on("error", () => undefined);
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  return { socket, closed, received: () => data };
}

/** Resolves true when `p` settles within `ms`, false otherwise. */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  const result = await Promise.race([p.then(() => true as const), timeout]);
  clearTimeout(timer);
  return result;
}

/** Open an upload session as the admin; its Location (relative, with `_region` through the front door). */
async function startUpload(base: string, repo: string): Promise<string> {
  const res = await fetch(`${base}/v2/${repo}/blobs/uploads/`, {
    method: "POST",
    headers: { authorization: adminAuth },
  });
  assert.equal(res.status, 202, await res.text());
  const location = res.headers.get("location")!;
  return location.startsWith("/") ? location : new URL(location).pathname + new URL(location).search;
}

function head(method: string, target: string, headers: Record<string, string>): string {
  const lines = [`${method} ${target} HTTP/1.1`, "Host: registry"];
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  return `${lines.join("\r\n")}\r\n\r\n`;
}

/** GET /v2/ as the admin from `localAddress` on a fresh connection: the status. */
function pullFrom(base: string, localAddress: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      `${base}/v2/`,
      { localAddress, agent: false, headers: { authorization: adminAuth }, timeout: 10_000 },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}

describe("slow bodies", () => {
  for (const where of ["node", "front door"]) {
    test(`an authenticated PATCH whose body stops moving is cut after the idle timeout (${where})`, async () => {
      const base = where === "node" ? registry("a") : mesh.frontDoor!;
      const location = await startUpload(base, "slow/stall");
      const raw = await openRaw(base);
      raw.socket.write(
        head("PATCH", location, {
          authorization: adminAuth,
          "content-type": "application/octet-stream",
          "content-length": String(1 << 20),
        }),
      );
      raw.socket.write(Buffer.alloc(4096, 1));
      // Then nothing more: the connection must not be held open.
      assert.ok(await within(raw.closed, CLOSE_BOUND_MS), `a stalled body held the connection (${where})`);
    });

    test(`an anonymous PUT with a trickling body gets its 401 and the connection closes (${where})`, async () => {
      const base = where === "node" ? registry("a") : mesh.frontDoor!;
      const raw = await openRaw(base);
      raw.socket.write(
        head(
          "PUT",
          `/v2/slow/anon/blobs/uploads/00000000-0000-4000-8000-000000000000?digest=sha256:${"0".repeat(64)}`,
          {
            "content-type": "application/octet-stream",
            "content-length": String(1 << 30),
          },
        ),
      );
      // A byte every 300 ms: never idle, so only closing on the refusal ends it.
      const trickle = setInterval(() => {
        if (!raw.socket.destroyed) raw.socket.write("x");
      }, 300);
      try {
        assert.ok(await within(raw.closed, CLOSE_BOUND_MS), `a refused body kept its connection (${where})`);
        assert.match(raw.received(), /^HTTP\/1\.1 401 /);
      } finally {
        clearInterval(trickle);
        raw.socket.destroy();
      }
    });
  }
});

describe("slow headers", () => {
  for (const where of ["node", "front door"]) {
    test(`headers trickled a byte at a time are cut by the headers deadline (${where})`, async () => {
      const base = where === "node" ? registry("a") : mesh.frontDoor!;
      const raw = await openRaw(base);
      raw.socket.write("GET /v2/ HTTP/1.1\r\nHost: registry\r\n");
      // Never idle, never done.
      const trickle = setInterval(() => {
        if (!raw.socket.destroyed) raw.socket.write("X-A: b\r\n");
      }, 300);
      try {
        assert.ok(
          await within(raw.closed, CLOSE_BOUND_MS),
          `trickled headers held the connection (${where})`,
        );
      } finally {
        clearInterval(trickle);
        raw.socket.destroy();
      }
    });
  }
});

describe("connections per client", () => {
  for (const where of ["node", "front door"]) {
    test(`one address gets at most the cap, and another address still pulls (${where})`, async () => {
      const base = where === "node" ? registry("b") : mesh.frontDoor!;
      const held: Raw[] = [];
      try {
        for (let i = 0; i < CAP; i++) held.push(await openRaw(base, "127.0.0.2"));
        await sleep(200);
        assert.ok(
          held.every((r) => !r.socket.destroyed),
          "connections within the cap stay open",
        );
        const extra = await openRaw(base, "127.0.0.2");
        held.push(extra);
        assert.ok(await within(extra.closed, 5_000), "the connection over the cap is closed");
        assert.match(extra.received(), /^HTTP\/1\.1 429 /);
        assert.match(extra.received(), /TOOMANYREQUESTS/);
        // Someone else: another address, and (at the front door) the usual client address.
        assert.equal(await pullFrom(base, "127.0.0.3"), 200);
        if (where === "front door") assert.equal(await pullFrom(base, "127.0.0.1"), 200);
      } finally {
        for (const r of held) r.socket.destroy();
      }
    });
  }

  test("the front door's own connections to a node are not capped as one client", async () => {
    // More concurrent pulls through the front door than one client may hold at a node directly,
    // each from its own address (the front door caps each of those, not the sum).
    const statuses = await Promise.all(
      Array.from({ length: CAP * 3 }, (_, i) => pullFrom(mesh.frontDoor!, `127.0.1.${i + 1}`)),
    );
    assert.ok(
      statuses.every((s) => s === 200),
      `statuses: ${statuses.join(",")}`,
    );
  });
});

/** The front door's process id, from its listening socket. */
async function frontDoorPid(): Promise<number> {
  const port = new URL(mesh.frontDoor!).port;
  const { stdout } = await run("ss", ["-Htlnp", `( sport = :${port} )`]);
  const m = /pid=(\d+)/.exec(stdout);
  assert.ok(m !== null, `no listener on ${port}: ${stdout}`);
  return Number(m[1]);
}

/** Established connections of process `pid` to the registry of `region`. */
async function connectionsTo(pid: number, region: string): Promise<number> {
  const port = new URL(registry(region)).port;
  const { stdout } = await run("ss", ["-Htnp", "state", "established", `( dport = :${port} )`]);
  return stdout.split("\n").filter((l) => l.includes(`pid=${pid},`)).length;
}

describe("proxying", () => {
  test("a client leaving in the middle of an upload takes the front door's request to the region with it", async () => {
    const pid = await frontDoorPid();
    const location = await startUpload(mesh.frontDoor!, "slow/leave");
    const region = new URLSearchParams(location.split("?")[1]).get("_region")!;
    const raw = await openRaw(mesh.frontDoor!);
    raw.socket.write(
      head("PATCH", location, {
        authorization: adminAuth,
        "content-type": "application/octet-stream",
        "content-length": String(1 << 20),
      }),
    );
    // Keep it moving (not idle) while the front door's request to the region is open.
    const feed = setInterval(() => raw.socket.write(Buffer.alloc(1024, 2)), 200);
    let during: number;
    try {
      await sleep(800);
      during = await connectionsTo(pid, region);
      assert.ok(during >= 1, "the upload is proxied over a connection to the region");
    } finally {
      clearInterval(feed);
      raw.socket.destroy();
    }
    await eventually(async () => (await connectionsTo(pid, region)) < during, 5_000, 100);
  });

  test("a client refused 401 mid-body that then leaves leaves no request to the region behind", async () => {
    const pid = await frontDoorPid();
    // Region b: the front door proxies nothing else there in this file, so no pooled socket is reused.
    const before = await connectionsTo(pid, "b");
    const raw = await openRaw(mesh.frontDoor!);
    raw.socket.write(
      head(
        "PUT",
        `/v2/slow/anon/blobs/uploads/00000000-0000-4000-8000-000000000000?_region=b&digest=sha256:${"0".repeat(64)}`,
        { "content-type": "application/octet-stream", "content-length": String(1 << 30) },
      ),
    );
    const trickle = setInterval(() => {
      if (!raw.socket.destroyed) raw.socket.write("x");
    }, 300);
    try {
      await eventually(() => / 401 /.test(raw.received()), 10_000, 50);
    } finally {
      clearInterval(trickle);
      raw.socket.destroy();
    }
    await eventually(async () => (await connectionsTo(pid, "b")) <= before, 5_000, 100);
  });
});
