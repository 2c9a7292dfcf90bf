/**
 * Looking into and steering a region's JetStream stream from tests and
 * benchmarks: read every event in it, or move a worker's durable consumer
 * past the end (as if the stream had aged out what that worker never read).
 * `client`: credentials for a server that requires them (a `meridian up`
 * mesh: testing/mesh.ts `natsIdentity(mesh, "operator")`).
 */
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { type NatsClientConfig, natsConnectOptions } from "../node/data/nats-connect.js";
import { decodeEvent, type RegistryEvent, streamName } from "../protocol/events.js";
import { durableName } from "../replication/worker.js";

/** Every event in `region`'s stream, in order. */
export async function streamEvents(
  natsUrl: string,
  region: string,
  client?: NatsClientConfig,
): Promise<RegistryEvent[]> {
  const nc = await connect({ ...natsConnectOptions(client), servers: natsUrl });
  try {
    const jsm = await jetstreamManager(nc);
    const last = (await jsm.streams.info(streamName(region))).state.last_seq;
    const out: RegistryEvent[] = [];
    if (last === 0) return out;
    const consumer = await jetstream(nc).consumers.get(streamName(region), {
      deliver_policy: DeliverPolicy.All,
    });
    for await (const m of await consumer.consume()) {
      out.push(decodeEvent(m.data));
      if (m.seq >= last) break;
    }
    return out;
  } finally {
    await nc.close();
  }
}

/**
 * Replace `destination`'s worker consumer on `source`'s stream with one that
 * starts after the stream's end: the events so far are never delivered to it.
 * Stop that worker first.
 */
export async function skipConsumerToEnd(
  natsUrl: string,
  source: string,
  destination: string,
  client?: NatsClientConfig,
): Promise<void> {
  const nc = await connect({ ...natsConnectOptions(client), servers: natsUrl });
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.consumers.delete(streamName(source), durableName(destination)).catch(() => undefined);
    await jsm.consumers.add(streamName(source), {
      durable_name: durableName(destination),
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.New,
    });
  } finally {
    await nc.close();
  }
}
