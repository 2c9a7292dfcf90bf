/**
 * Every peer channel notices a silent peer and reaches a returning one within
 * the bounds of PEER_CHANNEL_LIVENESS (mesh-client/peer-client.ts), and
 * every NATS connection a silent server within natsSilenceBoundMs
 * (node/data/nats-connect.ts): issue 11, a frozen region. A real grpc.Server
 * and a real nats-server behind a chaos/ TcpProxy.
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { connect } from "@nats-io/transport-node";
import { TcpProxy } from "../../chaos/tcp-proxy.js";
import { livenessChannelOptions, PEER_CHANNEL_LIVENESS, PeerClient } from "../../mesh-client/peer-client.js";
import { peerPackage } from "../../mesh-client/proto.js";
import { loadNodeConfig } from "../../node/config.js";
import {
  checkNatsClient,
  NATS_LIVENESS,
  natsClientFromEnv,
  natsConnectOptions,
  natsSilenceBoundMs,
} from "../../node/data/nats-connect.js";
import { sleep } from "../../testing/faults.js";
import { cleanupStack, eventually, startTestNats } from "../../testing/harness.js";

const cleanup = cleanupStack({ after });

/** A Peer server answering Status only (what these tests call), insecure, on port 0, behind a proxy. */
async function statusServer(): Promise<{ proxy: TcpProxy }> {
  const server = new grpc.Server();
  server.addService(peerPackage().meridian.peer.v1.Peer.service, {
    status: (_call: unknown, callback: grpc.sendUnaryData<object>) =>
      callback(null, { region: "b", applied: {}, peers: [] }),
  } as unknown as grpc.UntypedServiceImplementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  cleanup(() => new Promise<void>((resolve) => server.tryShutdown(() => resolve())));
  const proxy = await TcpProxy.start({ target: { host: "127.0.0.1", port } });
  cleanup(() => proxy.close());
  return { proxy };
}

test("a peer channel retries a peer that refuses at most every few seconds, however long it has refused", async (t) => {
  const { proxy } = await statusServer();
  const client = new PeerClient("b", proxy.address, grpc.credentials.createInsecure(), "a");
  cleanup(() => client.close());
  await client.status("a");
  proxy.partition();
  // The worker and the heartbeats keep calling; record when the channel tries to connect.
  const attempts: number[] = [];
  let refused = proxy.stats().refused;
  const started = Date.now();
  while (Date.now() - started < 25_000) {
    void client.status("a", { timeoutMs: 200 }).catch(() => undefined);
    await sleep(100);
    const now = proxy.stats().refused;
    if (now > refused) attempts.push(Date.now());
    refused = now;
  }
  const gaps = attempts.slice(1).map((at, i) => at - attempts[i]!);
  t.diagnostic(`gaps between connection attempts (ms): ${gaps.join(" ")}`);
  assert.ok(attempts.length >= 5, `attempts: ${attempts.length}`);
  // grpc-js by default backs off 1 s × 1.6ⁿ up to 120 s: by now 6.5–10 s apart, growing.
  // Jitter is ±20%; the rest is this loop's sampling and a loaded machine.
  const bound = PEER_CHANNEL_LIVENESS.maxBackoffMs * 1.2 + 1_500;
  for (const gap of gaps.slice(-3)) assert.ok(gap <= bound, `a gap of ${gap} ms (bound ${bound} ms)`);
  proxy.heal();
  const healed = Date.now();
  await eventually(
    () =>
      client.status("a", { timeoutMs: 500 }).then(
        () => true,
        () => false,
      ),
    bound + 2_000,
    100,
  );
  t.diagnostic(`answered ${Date.now() - healed} ms after the heal`);
});

test("an idle peer channel notices a peer that stopped answering (blackhole) and drops its connection", async (t) => {
  const { proxy } = await statusServer();
  // A channel with the options every PeerClient has.
  const Peer = peerPackage().meridian.peer.v1.Peer;
  const client = new Peer(proxy.address, grpc.credentials.createInsecure(), livenessChannelOptions());
  cleanup(() => client.close());
  await new Promise<void>((resolve, reject) =>
    client.status({}, (err: grpc.ServiceError | null) => (err ? reject(err) : resolve())),
  );
  const channel = client.getChannel();
  assert.equal(channel.getConnectivityState(false), grpc.connectivityState.READY);
  proxy.blackhole();
  const started = Date.now();
  // No call is open: only the channel's own keepalive can find out (grpc-js pings only during calls by default).
  const bound = PEER_CHANNEL_LIVENESS.keepaliveMs + PEER_CHANNEL_LIVENESS.keepaliveTimeoutMs;
  await eventually(
    () => channel.getConnectivityState(false) !== grpc.connectivityState.READY,
    bound + 4_000,
    100,
  );
  t.diagnostic(`connection dropped ${Date.now() - started} ms into the blackhole (bound ${bound} ms)`);
  proxy.heal();
});

test("a NATS connection notices a server that stopped answering (blackhole) within natsSilenceBoundMs", async (t) => {
  const nats = await startTestNats(cleanup);
  const proxy = await TcpProxy.start({ target: { host: "127.0.0.1", port: nats.port } });
  cleanup(() => proxy.close());
  const nc = await connect({ ...natsConnectOptions(undefined), servers: [`nats://${proxy.address}`] });
  cleanup(() => nc.close());
  let disconnectedAt: number | undefined;
  void (async () => {
    for await (const s of nc.status()) if (s.type === "disconnect") disconnectedAt ??= Date.now();
  })();
  await nc.flush();
  proxy.blackhole();
  const started = Date.now();
  const bound = natsSilenceBoundMs(undefined);
  // nats.js's own default: a PING every 2 minutes, 2 out — about 6 minutes.
  await eventually(() => disconnectedAt !== undefined, bound + 3_000, 100);
  t.diagnostic(`disconnect noticed ${disconnectedAt! - started} ms into the blackhole (bound ${bound} ms)`);
  proxy.heal();
  await nc.flush();
});

test("NATS liveness settings come from MERIDIAN_NATS_* and are checked", () => {
  const defaults = natsConnectOptions(undefined);
  assert.deepEqual(
    [defaults.pingInterval, defaults.maxPingOut, defaults.timeout],
    [NATS_LIVENESS.pingIntervalMs, NATS_LIVENESS.maxPingOut, NATS_LIVENESS.connectTimeoutMs],
  );
  const problems: string[] = [];
  const set = checkNatsClient(
    natsClientFromEnv({
      MERIDIAN_NATS_PING_INTERVAL_MS: "500",
      MERIDIAN_NATS_MAX_PING_OUT: "3",
      MERIDIAN_NATS_CONNECT_TIMEOUT_MS: "2000",
    }),
    problems,
  );
  assert.deepEqual(problems, []);
  assert.equal(natsSilenceBoundMs(set), 2_000);
  const options = natsConnectOptions(set);
  assert.deepEqual([options.pingInterval, options.maxPingOut, options.timeout], [500, 3, 2_000]);
  checkNatsClient(
    natsClientFromEnv({ MERIDIAN_NATS_PING_INTERVAL_MS: "soon", MERIDIAN_NATS_MAX_PING_OUT: "0" }, problems),
    problems,
  );
  assert.equal(problems.length, 2, problems.join("; "));
  // A process's configuration says the same, naming the variables.
  assert.throws(
    () =>
      loadNodeConfig({ env: { MERIDIAN_NATS_PING_INTERVAL_MS: "soon", MERIDIAN_NATS_MAX_PING_OUT: "0" } }),
    (err: Error) =>
      /MERIDIAN_NATS_PING_INTERVAL_MS: not a number/.test(err.message) &&
      /MERIDIAN_NATS_MAX_PING_OUT \(nats.maxPingOut\): must be >= 1/.test(err.message),
  );
});
