/**
 * More registry nodes for a region of a startProxiedMesh mesh (testing/mesh.ts),
 * as a region of several stateless nodes runs them with no load balancer: each
 * node on the region's NATS (through a TcpProxy of its own, so a test can cut
 * one node's log while its HTTP keeps answering), with its own port and view,
 * sharing the region's filesystem store (the same data directory: upload
 * sessions are files every node reads, node/data/fs-blob-store.ts). And a
 * mesh.json whose region's `registry` lists its nodes (protocol/mesh.ts).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { TcpProxy } from "../chaos/tcp-proxy.js";
import { meshDocument, parseMesh } from "../protocol/mesh.js";
import { type After, freePort, type MeridianProcess, spawnMeridian } from "./harness.js";
import type { ProxiedRegion } from "./mesh.js";

export interface ExtraNode {
  /** http://127.0.0.1:PORT */
  url: string;
  process: MeridianProcess;
  /** The node's own link to the region's nats-server (partition it to freeze its view). */
  nats: TcpProxy;
  env: Record<string, string>;
}

/**
 * One more node of `region` (named `index` for its view directory), stopped
 * after the test. `env` adds settings.
 */
export async function addRegionNode(
  after: After,
  region: ProxiedRegion,
  index: number,
  env: Record<string, string> = {},
): Promise<ExtraNode> {
  const nats = await TcpProxy.start({ target: { host: "127.0.0.1", port: region.nats.port } });
  after(() => nats.close());
  const port = await freePort();
  const nodeEnv = {
    ...region.nodeEnv,
    MERIDIAN_LISTEN_PORT: String(port),
    MERIDIAN_NATS_SERVERS: `nats://${nats.address}`,
    // Its own view (a view is one process's); the store is the region's, shared.
    MERIDIAN_VIEW_DIR: join(region.dir, `view-node${index}`),
    ...env,
  };
  const process = await spawnMeridian(after, "node/server.js", nodeEnv);
  return { url: process.info.registry!, process, nats, env: nodeEnv };
}

/**
 * A copy of `meshFile` (next to it, named `name`) in which each region named
 * in `nodes` lists those registry nodes; returns its path.
 */
export function meshWithNodes(meshFile: string, nodes: Record<string, string[]>, name: string): string {
  const mesh = parseMesh(JSON.parse(readFileSync(meshFile, "utf8")));
  const out = join(meshFile, "..", name);
  const regions = mesh.regions.map((r) => {
    const list = nodes[r.name];
    return list === undefined ? r : { ...r, registry: list[0]!, registries: list };
  });
  writeFileSync(out, JSON.stringify(meshDocument({ ...mesh, regions })));
  return out;
}

/** Requests a node has answered so far (its own metrics: every route's request histogram count). */
export async function requestsAnswered(node: string): Promise<number> {
  const text = await (await fetch(`${node}/metrics`)).text();
  let total = 0;
  for (const line of text.split("\n"))
    if (line.startsWith("meridian_http_request_duration_seconds_count"))
      total += Number(line.split(" ").pop());
  return total;
}
