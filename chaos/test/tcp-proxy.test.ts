/**
 * TcpProxy against real sockets on 127.0.0.1: an echo server, a server that
 * stops reading, and an HTTP server behind the proxy. Every server, proxy and
 * socket a test opens is closed by that test's `t.after`.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import http from "node:http";
import net, { type Socket } from "node:net";
import { performance } from "node:perf_hooks";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { TcpProxy } from "../tcp-proxy.js";

const MiB = 1024 * 1024;
const HOST = "127.0.0.1";

type After = (fn: () => Promise<void> | void) => void;

interface TestServer {
  port: number;
  sockets: Set<Socket>;
}

async function listen(server: net.Server, after: After, sockets: Set<Socket>): Promise<number> {
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
    socket.on("close", () => sockets.delete(socket));
  });
  server.listen(0, HOST);
  await once(server, "listening");
  after(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return (server.address() as net.AddressInfo).port;
}

/** Echoes every byte back; ends its side when the client ends. */
async function startEcho(after: After): Promise<TestServer> {
  const sockets = new Set<Socket>();
  const server = net.createServer((socket) => socket.pipe(socket));
  return { port: await listen(server, after, sockets), sockets };
}

/** Accepts connections and does not read them until `release()`; then hashes what arrives. */
async function startSink(after: After): Promise<{
  port: number;
  release(): Promise<{ bytes: number; sha256: string }>;
}> {
  const sockets = new Set<Socket>();
  let first: Socket | undefined;
  let arrived: (socket: Socket) => void = () => {};
  const server = net.createServer({ pauseOnConnect: true }, (socket) => {
    first ??= socket;
    arrived(socket);
  });
  const port = await listen(server, after, sockets);
  return {
    port,
    async release() {
      const socket = first ?? (await new Promise<Socket>((resolve) => (arrived = resolve)));
      const hash = createHash("sha256");
      let bytes = 0;
      socket.on("data", (chunk: Buffer) => {
        bytes += chunk.length;
        hash.update(chunk);
      });
      socket.resume();
      await once(socket, "end");
      socket.end();
      return { bytes, sha256: hash.digest("hex") };
    },
  };
}

/** Answers GET /hello with 200 "hello". */
async function startHttp(after: After): Promise<TestServer> {
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    if (req.url === "/hello") res.end("hello");
    else res.writeHead(404).end();
  });
  return { port: await listen(server, after, sockets), sockets };
}

async function startProxy(after: After, port: number): Promise<TcpProxy> {
  const proxy = await TcpProxy.start({ target: { host: HOST, port } });
  after(() => proxy.close());
  return proxy;
}

/** A client socket, destroyed by the test's cleanup. */
async function connect(after: After, port: number): Promise<Socket> {
  const socket = net.connect({ host: HOST, port });
  socket.on("error", () => {});
  after(() => {
    socket.destroy();
  });
  await once(socket, "connect");
  return socket;
}

/** Resolves with the next `length` bytes read from `socket`; rejects after `ms`. */
function read(socket: Socket, length: number, ms: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const timer = setTimeout(() => {
      done();
      reject(new Error(`read: timed out after ${ms} ms with ${got}/${length} bytes`));
    }, ms);
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      got += chunk.length;
      if (got >= length) {
        done();
        resolve(Buffer.concat(chunks));
      }
    };
    const onClose = () => {
      done();
      reject(new Error(`read: closed with ${got}/${length} bytes`));
    };
    const done = () => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("close", onClose);
    };
    socket.on("data", onData);
    socket.on("close", onClose);
  });
}

/** Writes `text` and expects it echoed back within `ms`; returns the round-trip time. */
async function roundTrip(socket: Socket, text: string, ms = 2000): Promise<number> {
  const started = performance.now();
  const reply = read(socket, Buffer.byteLength(text), ms);
  socket.write(text);
  assert.equal((await reply).toString(), text);
  return performance.now() - started;
}

/** Resolves with how long `socket` took to close; rejects if it is still open after `ms`. */
async function closed(socket: Socket, ms: number): Promise<number> {
  const started = performance.now();
  if (!socket.destroyed) {
    await Promise.race([
      new Promise((resolve) => socket.once("close", resolve)),
      sleep(ms, undefined, { ref: false }).then(() => {
        throw new Error(`socket still open after ${ms} ms`);
      }),
    ]);
  }
  return performance.now() - started;
}

/** GET through `port` on a fresh connection; rejects with "timeout" after `ms`. */
function httpGet(port: number, path: string, ms: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: HOST, port, path, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() });
      });
      res.on("error", reject);
    });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error("timeout"));
    }, ms);
    req.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** Writes `data` in 64 KiB chunks, waiting for "drain" whenever write() says to. */
async function writeAll(socket: Socket, data: Buffer): Promise<void> {
  for (let offset = 0; offset < data.length; offset += 64 * 1024) {
    if (!socket.write(data.subarray(offset, offset + 64 * 1024))) await once(socket, "drain");
  }
}

const sha256 = (data: Buffer | Buffer[]) => {
  const hash = createHash("sha256");
  for (const chunk of Array.isArray(data) ? data : [data]) hash.update(chunk);
  return hash.digest("hex");
};

test("8 MiB passes through an echo server unchanged, both ways", { timeout: 30_000 }, async (t) => {
  const echo = await startEcho(t.after.bind(t));
  const proxy = await startProxy(t.after.bind(t), echo.port);
  const client = await connect(t.after.bind(t), proxy.port);
  const payload = randomBytes(8 * MiB);

  // Don't read for a while, so the echo's writes and then the proxy back up.
  client.pause();
  const received: Buffer[] = [];
  client.on("data", (chunk: Buffer) => received.push(chunk));
  const ended = once(client, "end");
  const writing = writeAll(client, payload).then(() => client.end());
  await sleep(300);
  client.resume();
  await writing;
  await ended;

  const back = Buffer.concat(received);
  assert.equal(back.length, payload.length);
  assert.equal(sha256(back), sha256(payload));
  const stats = proxy.stats();
  assert.equal(stats.bytesUp, 8 * MiB);
  assert.equal(stats.bytesDown, 8 * MiB);
});

test("backpressure: a target that stops reading stalls the sender", { timeout: 30_000 }, async (t) => {
  const sink = await startSink(t.after.bind(t));
  const proxy = await startProxy(t.after.bind(t), sink.port);
  const client = await connect(t.after.bind(t), proxy.port);
  const block = randomBytes(MiB);
  const sent: Buffer[] = [];
  const cap = 256 * MiB;

  // Without backpressure the proxy would read everything into memory and the
  // sender would never stall; with it, the sender stalls once the kernel buffers
  // along the path are full (tens of MiB at most on loopback).
  let stalled = false;
  let total = 0;
  while (total < cap) {
    const chunk = Buffer.from(block);
    chunk.writeUInt32BE(sent.length, 0);
    sent.push(chunk);
    total += chunk.length;
    if (!client.write(chunk)) {
      const drained = await Promise.race([once(client, "drain").then(() => true), sleep(1000, false)]);
      if (!drained) {
        stalled = true;
        break;
      }
    }
  }
  assert.ok(stalled, `sender never stalled after ${total / MiB} MiB`);
  const before = proxy.stats().bytesUp;
  await sleep(200);
  assert.equal(proxy.stats().bytesUp, before, "the proxy kept forwarding into a target that does not read");
  assert.ok(before < total);

  const receiving = sink.release();
  client.end();
  const got = await receiving;
  assert.equal(got.bytes, total);
  assert.equal(got.sha256, sha256(sent));
  assert.equal(proxy.stats().bytesUp, total);
});

test("partition cuts open connections, refuses new ones; heal restores", { timeout: 30_000 }, async (t) => {
  const after = t.after.bind(t);
  const echo = await startEcho(after);
  const web = await startHttp(after);
  const echoProxy = await startProxy(after, echo.port);
  const webProxy = await startProxy(after, web.port);

  const open = await connect(after, echoProxy.port);
  await roundTrip(open, "before");
  assert.deepEqual(await httpGet(webProxy.port, "/hello", 2000), { status: 200, body: "hello" });

  echoProxy.partition();
  webProxy.partition();
  assert.ok((await closed(open, 1000)) < 1000);
  await sleep(50);
  assert.equal(echo.sockets.size, 0, "the target side of the cut connection is still open");
  assert.equal(echoProxy.stats().connections, 0);

  // New connections are accepted and reset at once: no hang, no data.
  const refused = net.connect({ host: HOST, port: echoProxy.port });
  const errors: Error[] = [];
  refused.on("error", (err) => errors.push(err));
  after(() => {
    refused.destroy();
  });
  refused.on("data", () => assert.fail("data through a partition"));
  refused.write("ping");
  assert.ok((await closed(refused, 1000)) < 1000);
  const started = performance.now();
  await assert.rejects(httpGet(webProxy.port, "/hello", 2000), (err: Error) => err.message !== "timeout");
  assert.ok(performance.now() - started < 1000);
  assert.equal(echoProxy.stats().refused, 1);
  assert.equal(webProxy.stats().refused, 1);
  assert.equal(echo.sockets.size, 0, "a refused connection reached the target");

  echoProxy.heal();
  webProxy.heal();
  const fresh = await connect(after, echoProxy.port);
  await roundTrip(fresh, "after");
  assert.deepEqual(await httpGet(webProxy.port, "/hello", 2000), { status: 200, body: "hello" });
  assert.equal(echoProxy.stats().refused, 1);
});

test("blackhole: nothing passes until heal, then held bytes arrive in order", {
  timeout: 30_000,
}, async (t) => {
  const after = t.after.bind(t);
  const echo = await startEcho(after);
  const web = await startHttp(after);
  const echoProxy = await startProxy(after, echo.port);
  const webProxy = await startProxy(after, web.port);

  const open = await connect(after, echoProxy.port);
  await roundTrip(open, "one");

  echoProxy.blackhole();
  webProxy.blackhole();
  const stalled = read(open, 6, 5000);
  open.write("two");
  open.write("six");
  await assert.rejects(read(open, 1, 300), /timed out/);
  await assert.rejects(httpGet(webProxy.port, "/hello", 300), /^Error: timeout$/);
  assert.equal(web.sockets.size, 0, "a new connection reached the target through a blackhole");
  assert.equal(open.destroyed, false);
  assert.equal(echoProxy.stats().bytesUp, 3);
  assert.equal(echoProxy.stats().bytesDown, 3);

  echoProxy.heal();
  webProxy.heal();
  assert.equal((await stalled).toString(), "twosix");
  assert.deepEqual(await httpGet(webProxy.port, "/hello", 2000), { status: 200, body: "hello" });
});

test("setDelay adds latency both ways and keeps order", { timeout: 30_000 }, async (t) => {
  const after = t.after.bind(t);
  const echo = await startEcho(after);
  const proxy = await startProxy(after, echo.port);
  const client = await connect(after, proxy.port);

  const baseline = await roundTrip(client, "warm-up");
  proxy.setDelay(100);
  const delayed = await roundTrip(client, "slow");
  assert.ok(delayed >= 195, `round trip took ${delayed.toFixed(1)} ms with 100 ms each way`);
  assert.ok(delayed >= baseline + 100);

  // Many small writes, spread over time so they are separate chunks; the delay
  // drops to 0 halfway, so later chunks are due before earlier ones still held.
  let expected = "";
  for (let i = 0; i < 400; i++) expected += `${i},`;
  const reply = read(client, expected.length, 10_000);
  for (let i = 0; i < 400; i++) {
    client.write(`${i},`);
    if (i % 10 === 9) await sleep(2);
    if (i === 200) proxy.setDelay(0);
  }
  assert.equal((await reply).toString(), expected);

  const undelayed = await roundTrip(client, "fast");
  assert.ok(undelayed < 100, `round trip took ${undelayed.toFixed(1)} ms after setDelay(0)`);
  assert.throws(() => proxy.setDelay(-1), RangeError);
});

test("stats count connections, bytes and refusals", { timeout: 30_000 }, async (t) => {
  const after = t.after.bind(t);
  const echo = await startEcho(after);
  const proxy = await startProxy(after, echo.port);
  assert.deepEqual(proxy.stats(), { connections: 0, accepted: 0, bytesUp: 0, bytesDown: 0, refused: 0 });
  assert.equal(proxy.address, `127.0.0.1:${proxy.port}`);

  const a = await connect(after, proxy.port);
  const b = await connect(after, proxy.port);
  await roundTrip(a, "12345");
  await roundTrip(b, "1234567890");
  assert.deepEqual(proxy.stats(), { connections: 2, accepted: 2, bytesUp: 15, bytesDown: 15, refused: 0 });

  // A clean close on both ends frees the connection.
  a.end();
  await closed(a, 2000);
  for (let i = 0; i < 100 && proxy.stats().connections !== 1; i++) await sleep(10);
  assert.equal(proxy.stats().connections, 1);

  proxy.partition();
  const refused = net.connect({ host: HOST, port: proxy.port });
  refused.on("error", () => {});
  after(() => {
    refused.destroy();
  });
  await closed(refused, 1000);
  assert.deepEqual(proxy.stats(), { connections: 0, accepted: 2, bytesUp: 15, bytesDown: 15, refused: 1 });
});

test("close() stops listening and resets every connection", { timeout: 30_000 }, async (t) => {
  const after = t.after.bind(t);
  const echo = await startEcho(after);
  const proxy = await TcpProxy.start({ target: { host: HOST, port: echo.port } });
  const flowing = await connect(after, proxy.port);
  await roundTrip(flowing, "x");
  proxy.blackhole();
  const held = await connect(after, proxy.port);

  await proxy.close();
  await closed(flowing, 1000);
  await closed(held, 1000);
  assert.equal(proxy.stats().connections, 0);
  const late = net.connect({ host: HOST, port: proxy.port });
  const [err] = (await once(late, "error")) as [NodeJS.ErrnoException];
  assert.equal(err.code, "ECONNREFUSED");
  await proxy.close(); // idempotent
});

test("close() leaves no open handles: a process using the proxy exits", { timeout: 30_000 }, async () => {
  // Leaves connections in every state (forwarding, delayed chunks pending,
  // held by a blackhole), closes the proxy and the echo server, and expects the
  // process to exit on its own with no TCP handle or timer left.
  const script = `
    import net from "node:net";
    import { once } from "node:events";
    const { TcpProxy } = await import(process.argv[1]);
    const sockets = new Set();
    const echo = net.createServer((s) => { sockets.add(s); s.on("error", () => {}); s.pipe(s); });
    echo.listen(0, "127.0.0.1");
    await once(echo, "listening");
    const proxy = await TcpProxy.start({ target: { host: "127.0.0.1", port: echo.address().port } });
    const open = async () => {
      const s = net.connect({ host: "127.0.0.1", port: proxy.port });
      s.on("error", () => {});
      await once(s, "connect");
      return s;
    };
    const a = await open();
    a.write("hello");
    await once(a, "data");
    proxy.setDelay(5000);
    a.write("pending");
    await new Promise((r) => setTimeout(r, 50));
    proxy.blackhole();
    const b = await open();
    b.write("held");
    await new Promise((r) => setTimeout(r, 50));
    await proxy.close();
    await Promise.all([a, b].map((s) => new Promise((r) => (s.destroyed ? r() : s.once("close", r)))));
    for (const s of sockets) s.destroy();
    await new Promise((r) => echo.close(r));
    await new Promise((r) => setTimeout(r, 100)); // handles finish closing on the next loop turns
    const left = process.getActiveResourcesInfo().filter((r) => /TCP|Timeout|Immediate/.test(r));
    process.stdout.write(JSON.stringify(left));
  `;
  const entry = new URL("../tcp-proxy.js", import.meta.url).href;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script, entry], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let errOut = "";
  child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (errOut += chunk.toString()));
  const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  const [code, signal] = await exited;
  clearTimeout(timer);
  assert.equal(signal, null, `the process did not exit by itself; stdout: ${out}`);
  assert.equal(code, 0, errOut);
  assert.deepEqual(JSON.parse(out), []);
});
