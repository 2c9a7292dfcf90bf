/**
 * Issue 10, finding 1 (transport): the event log had no authentication. Any
 * local user could connect to a region's nats-server, publish a `user.set`
 * event and purge the audit stream. Against a real `meridian up --auth`
 * mesh of two regions: anonymous clients and unknown keys are refused; a
 * node's credential publishes only its own region's subjects and cannot
 * purge, delete or update streams; a worker's credential cannot write into
 * another region's stream; nobody reads `_INBOX.>` or another identity's
 * inbox; the operator can purge (the refusals are permissions, not a server
 * that refuses everything); and the mesh still replicates end to end.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection, nkeys } from "@nats-io/transport-node";
import { auditStreamName } from "../../node/audit.js";
import {
  isPermissionViolation,
  type NatsClientConfig,
  natsConnectOptions,
} from "../../node/data/nats-connect.js";
import { encodeEvent, streamName, subjectFor } from "../../protocol/events.js";
import { within } from "../../testing/faults.js";
import { cleanupStack, eventually, runCli, tempDir } from "../../testing/harness.js";
import { natsIdentity, type RunningMesh, startMesh } from "../../testing/mesh.js";
import { OCI_MANIFEST, OciClient } from "../../testing/oci-client.js";

const cleanup = cleanupStack({ after });
let mesh: RunningMesh;
let admin: string;

const natsUrl = (region: string) => mesh.regions.get(region)!.nats;

async function connectAs(region: string, client?: NatsClientConfig): Promise<NatsConnection> {
  const nc = await connect({
    ...natsConnectOptions(client),
    servers: natsUrl(region),
    reconnect: false,
    timeout: 5_000,
  });
  cleanup(() => nc.close());
  return nc;
}

/** A `user.set` making `name` a system admin, as the pentest forged it. */
function forgedAdmin(region: string, name: string) {
  return {
    id: crypto.randomUUID(),
    type: "user.set",
    origin: region,
    at: new Date().toISOString(),
    name,
    passwordHash: "scrypt$forged",
    systemAdmin: true,
  };
}

/** `op` must be refused by the server's permissions (not time out, not fail otherwise). */
async function refused(op: Promise<unknown>, what: string): Promise<void> {
  const outcome = await within(
    op.then(
      () => "allowed",
      (err: unknown) => err,
    ),
    10_000,
  );
  assert.ok(
    isPermissionViolation(outcome),
    `${what}: expected a permissions violation, got ${String(outcome)}`,
  );
}

/** Subscribing to `subject` as this connection must be refused. */
async function subscribeRefused(nc: NatsConnection, subject: string): Promise<void> {
  const sub = nc.subscribe(subject);
  const closed = await within(sub.closed, 10_000);
  assert.ok(isPermissionViolation(closed), `subscribe ${subject}: got ${String(closed)}`);
}

before(async () => {
  mesh = await startMesh(cleanup, ["a", "b"], undefined, ["--auth"]);
  admin = `Basic ${Buffer.from(`admin:${readFileSync(mesh.adminPasswordFile!, "utf8").trim()}`).toString("base64")}`;
});

describe("NATS of a meridian up mesh", () => {
  test("refuses anonymous clients and keys it does not know", async () => {
    for (const region of ["a", "b"]) {
      await assert.rejects(connectAs(region), (err: Error) => /authorization/i.test(err.message), region);
    }
    const stranger = join(tempDir(cleanup), "stranger.seed");
    writeFileSync(stranger, `${new TextDecoder().decode(nkeys.createUser().getSeed())}\n`, { mode: 0o600 });
    await assert.rejects(connectAs("a", { seedFile: stranger }), (err: Error) =>
      /authorization/i.test(err.message),
    );
    // A node's key is known to its own region's server only.
    await assert.rejects(connectAs("b", natsIdentity(mesh, "a-node")), (err: Error) =>
      /authorization/i.test(err.message),
    );
  });

  test("the node's credential cannot publish another region's events or purge, delete or update streams", async () => {
    const nc = await connectAs("a", natsIdentity(mesh, "a-node"));
    const js = jetstream(nc, { timeout: 5_000 });
    const forged = forgedAdmin("b", "mallory");
    await refused(
      js.publish(subjectFor("b", forged as never), encodeEvent(forged as never)),
      "user.set into b",
    );
    const jsm = await jetstreamManager(nc);
    for (const stream of [streamName("a"), auditStreamName("a")]) {
      await refused(jsm.streams.purge(stream), `purge ${stream}`);
      await refused(jsm.streams.delete(stream), `delete ${stream}`);
      await refused(jsm.streams.update(stream, { max_msgs: 1 }), `update ${stream}`);
      await refused(jsm.streams.deleteMessage(stream, 1), `delete a message of ${stream}`);
    }
    // Reading its own stream is what it is for; taking over b's worker's durable is not.
    assert.ok((await jsm.streams.info(streamName("a"))).state.messages > 0);
    await refused(
      nc.request(
        `$JS.API.CONSUMER.MSG.NEXT.${streamName("a")}.replicate-to-b`,
        JSON.stringify({ batch: 1 }),
        {
          timeout: 5_000,
        },
      ),
      "pull from b's worker's durable",
    );
    await refused(jsm.consumers.delete(streamName("a"), "replicate-to-b"), "delete b's worker's durable");
  });

  test("the peer's credential reads its region's stream and appends nothing", async () => {
    const nc = await connectAs("a", natsIdentity(mesh, "a-peer"));
    const forged = forgedAdmin("a", "mallory");
    await refused(
      jetstream(nc, { timeout: 5_000 }).publish(
        subjectFor("a", forged as never),
        encodeEvent(forged as never),
      ),
      "user.set into a",
    );
    const jsm = await jetstreamManager(nc);
    await refused(jsm.streams.info(auditStreamName("a")), "audit stream info");
    assert.ok((await jsm.streams.info(streamName("a"))).state.messages > 0);
  });

  test("a worker's credential cannot publish into another region's stream or read its audit log", async () => {
    const nc = await connectAs("a", natsIdentity(mesh, "b-worker"));
    const js = jetstream(nc, { timeout: 5_000 });
    const forged = forgedAdmin("a", "mallory");
    await refused(
      js.publish(subjectFor("a", forged as never), encodeEvent(forged as never)),
      "user.set into a",
    );
    const jsm = await jetstreamManager(nc);
    await refused(jsm.streams.info(auditStreamName("a")), "audit stream info");
    await refused(jsm.streams.purge(streamName("a")), "purge a's stream");
    // Its own durable on a's stream is readable (replication works through it).
    assert.equal((await jsm.consumers.info(streamName("a"), "replicate-to-b")).name, "replicate-to-b");
  });

  test("nobody subscribes to _INBOX.> or to another identity's inbox", async () => {
    for (const identity of ["a-node", "a-peer", "a-worker", "b-worker"]) {
      const nc = await connectAs("a", natsIdentity(mesh, identity));
      await subscribeRefused(nc, "_INBOX.>");
      await subscribeRefused(nc, ">");
      await subscribeRefused(nc, identity === "a-node" ? "_INBOX_a-worker.>" : "_INBOX_a-node.>");
      await subscribeRefused(nc, "_INBOX_operator.>");
    }
  });

  test("the mesh replicates end to end with authentication on NATS", async () => {
    const a = new OciClient(mesh.regions.get("a")!.registry, admin);
    const b = new OciClient(mesh.regions.get("b")!.registry, admin);
    const { digest } = await a.pushRandomImage("nats/e2e", "v1");
    await eventually(
      async () => {
        const res = await b.fetch("/v2/nats/e2e/manifests/v1", { headers: { accept: OCI_MANIFEST } });
        await res.arrayBuffer();
        return res.status === 200 && res.headers.get("docker-content-digest") === digest;
      },
      30_000,
      200,
    );
  });

  test("meridian rebuild signs in as the operator from the data directory", async () => {
    const view = join(tempDir(cleanup), "view");
    const res = await runCli(["rebuild", "--data", mesh.dataDir, "--region", "a", "--view", view], 60_000);
    assert.equal(res.code, 0, res.stderr);
    assert.ok((JSON.parse(res.stdout) as { events: number }).events > 0);
  });

  test("the operator may purge (the refusals above are permissions)", async () => {
    const nc = await connectAs("a", natsIdentity(mesh, "operator"));
    const jsm = await jetstreamManager(nc);
    const stream = auditStreamName("a");
    assert.ok((await jsm.streams.info(stream)).state.messages > 0);
    await jsm.streams.purge(stream);
    assert.equal((await jsm.streams.info(stream)).state.messages, 0);
  });
});

describe("up's housekeeping as the operator", () => {
  test("a restart puts back the audit stream's limits, which no node may change", async () => {
    const dir = tempDir(cleanup, "meridian-housekeeping-");
    const first = await startMesh(cleanup, ["solo"], dir);
    const nc = await connect({
      ...natsConnectOptions(natsIdentity(first, "operator")),
      servers: first.regions.get("solo")!.nats,
    });
    const jsm = await jetstreamManager(nc);
    const wanted = (await jsm.streams.info(auditStreamName("solo"))).config.max_bytes;
    await jsm.streams.update(auditStreamName("solo"), { max_bytes: 4096 });
    await nc.close();
    assert.equal(await first.stop(), 0);
    const second = await startMesh(cleanup, ["solo"], dir);
    const again = await connect({
      ...natsConnectOptions(natsIdentity(second, "operator")),
      servers: second.regions.get("solo")!.nats,
    });
    cleanup(() => again.close());
    const info = await (await jetstreamManager(again)).streams.info(auditStreamName("solo"));
    assert.equal(info.config.max_bytes, wanted);
  });
});
