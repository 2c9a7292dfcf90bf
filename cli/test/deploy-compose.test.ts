/**
 * deploy/compose checked without a Docker engine (./deploy-compose-check.ts
 * says what is checked): Debian's `docker-compose config` accepts it, the
 * one-shot services really make the certificates and secrets, every process
 * loads its settings, and Prometheus, mesh.json and the NATS clusters agree
 * with the services. Broken copies of the folder must each be reported, so
 * the checks cannot pass vacuously. Region a's NATS cluster is then run
 * from its files on loopback, as far as one can without containers.
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { cpSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { JetStreamLog } from "../../node/data/jetstream-log.js";
import { inboxPrefixOf, natsConnectOptions } from "../../node/data/nats-connect.js";
import {
  cleanupStack,
  eventually,
  freePort,
  REPO_ROOT,
  silentLogger,
  tempDir,
} from "../../testing/harness.js";
import { checkCompose } from "./deploy-compose-check.js";

const COMPOSE = join(REPO_ROOT, "deploy", "compose");

test("deploy/compose: docker-compose config accepts it and every service is configured consistently", (t) => {
  const volumesDir = tempDir(cleanupStack(t));
  assert.deepEqual(checkCompose(COMPOSE, { volumesDir }), []);
  // The one-shot services made what the processes read.
  for (const f of [
    "certs/ca.crt",
    "certs/a.crt",
    "certs/front-door.key",
    "nats-auth/b-worker.seed",
    "auth/token-key.pem",
    "s3/credentials.json",
  ])
    assert.ok(readFileSync(join(volumesDir, "secrets", f)).length > 0, f);
});

/**
 * A copy of deploy/compose with `file`'s text changed by `edit` (which must
 * change it); the whole of deploy/ is copied, for the files compose mounts
 * from next to it (../prometheus/rules.yml, ../grafana/meridian.json).
 */
function brokenCopy(dir: string, file: string, edit: (text: string) => string): string {
  const deploy = join(dir, `copy-${Math.random().toString(36).slice(2)}`);
  cpSync(join(COMPOSE, ".."), deploy, { recursive: true });
  const copy = join(deploy, "compose");
  const before = readFileSync(join(copy, file), "utf8");
  const after = edit(before);
  assert.notEqual(after, before, `the edit of ${file} changed nothing`);
  writeFileSync(join(copy, file), after);
  return copy;
}

/** `fresh`: checked with volumes of its own, its one-shot services run (the break is in what they make). */
const BROKEN: Array<{
  what: string;
  file: string;
  edit: (t: string) => string;
  reported: RegExp;
  fresh?: boolean;
}> = [
  {
    what: "a misspelt variable",
    file: "docker-compose.yml",
    edit: (t) => t.replace('MERIDIAN_LISTEN_PORT: "5000"', 'MERIDIAN_LISTN_PORT: "5000"'),
    reported: /node-a-1: MERIDIAN_LISTN_PORT is not a setting of the node/,
  },
  {
    what: "a value out of range",
    file: "docker-compose.yml",
    edit: (t) => t.replace('MERIDIAN_METRICS_PORT: "9100"', 'MERIDIAN_METRICS_PORT: "91000"'),
    reported: /peer-a: MERIDIAN_METRICS_PORT \(metrics\.port\)/,
  },
  {
    what: "a seed file that is not there",
    file: "docker-compose.yml",
    edit: (t) => t.replace("/secrets/nats-auth/c-peer.seed", "/secrets/nats-auth/c-peers.seed"),
    reported: /peer-c: .*c-peers\.seed/,
  },
  {
    what: "a mounted file that is missing",
    file: "docker-compose.yml",
    edit: (t) => t.replace("./prometheus.yml:", "./prometheus.yaml:"),
    reported: /prometheus: mounted file .*prometheus\.yaml does not exist/,
  },
  {
    what: "no alerting rules loaded",
    file: "prometheus.yml",
    edit: (t) => t.replace("rule_files:\n  - /etc/prometheus/rules.yml\n", ""),
    reported: /prometheus\.yml: no rule_files/,
  },
  {
    what: "a rule file that is not mounted",
    file: "docker-compose.yml",
    edit: (t) =>
      t.replace(
        "../prometheus/rules.yml:/etc/prometheus/rules.yml:ro",
        "../prometheus/rules.yml:/etc/prometheus/alerts.yml:ro",
      ),
    reported: /prometheus\.yml: rule file \/etc\/prometheus\/rules\.yml is not mounted/,
  },
  {
    what: "a dashboard provider reading a directory with no dashboard",
    file: "grafana/provisioning/dashboards/meridian.yml",
    edit: (t) => t.replace("path: /etc/grafana/dashboards", "path: /etc/grafana/boards"),
    reported: /grafana: provider meridian reads \/etc\/grafana\/boards, where no dashboard is mounted/,
  },
  {
    what: "a scrape target on the wrong port",
    file: "prometheus.yml",
    edit: (t) => t.replace('"worker-b:9100"', '"worker-b:9101"'),
    reported: /worker-b:9101: worker-b serves \/metrics on 9100/,
  },
  {
    what: "a scrape target that is no service",
    file: "prometheus.yml",
    edit: (t) => t.replace('"peer-c:9100"', '"peer-z:9100"'),
    reported: /peer-z:9100: no Meridian service peer-z[\s\S]*peer-c is not scraped/,
  },
  {
    what: "mesh.json's grpc on another port",
    file: "mesh.json",
    edit: (t) => t.replace('"peer-b:7000"', '"peer-b:7001"'),
    reported: /mesh.json region b: tcp:\/\/peer-b:7001: peer-b listens on 7000/,
  },
  {
    what: "mesh.json's registry naming another region's node",
    file: "mesh.json",
    edit: (t) => t.replace('"http://node-c-1:5000"', '"http://node-a-2:5000"'),
    reported: /mesh.json region c: http:\/\/node-a-2:5000: node-a-2 is region a's/,
  },
  {
    what: "mesh.json's registry leaving out one of the region's nodes",
    file: "mesh.json",
    edit: (t) => t.replace(', "http://node-b-2:5000"', ""),
    reported: /mesh.json region b: registry lists 1 nodes, compose runs 2/,
  },
  {
    what: "a NATS cluster whose third member is not in mesh.json",
    file: "mesh.json",
    edit: (t) => t.replace('"nats://nats-b-3:4222"', '"nats://nats-b-2:4222"'),
    reported: /region b's NATS: nats-b-3 is in the cluster but not in mesh\.json/,
  },
  {
    what: "a NATS server mounting another region's config",
    file: "docker-compose.yml",
    edit: (t) => t.replace(/(nats-c-2:[\s\S]*?)\.\/nats\/c\.conf/, "$1./nats/a.conf"),
    reported: /region c's NATS: nats-c-2 mounts .*a\.conf, not region c's cluster config/,
  },
  {
    what: "a NATS config nats-server refuses",
    file: "nats/b.conf",
    edit: (t) =>
      t.replace("max_payload: 8388608", "max_payload: 8388608\nno_such_option: true\njetstream: {"),
    reported: /region b's NATS: nats-server -t for nats-b-1/,
  },
  {
    what: "two nodes sharing a data volume",
    file: "docker-compose.yml",
    edit: (t) => t.replace("node-b-2-data:/data", "node-b-1-data:/data"),
    reported: /node-b-2: data volume node-b-1-data shared with node-b-1, node-b-2/,
  },
  {
    what: "a node on the filesystem store",
    file: "docker-compose.yml",
    edit: (t) => t.replace(/(node-c-2:[\s\S]*?MERIDIAN_REGION: c)/, "$1\n      MERIDIAN_STORAGE_TYPE: fs"),
    reported: /node-c-2: storage is not s3/,
  },
  {
    what: "streams with one replica on a three-server cluster",
    file: "docker-compose.yml",
    edit: (t) => t.replace(/(worker-a:[\s\S]*?)MERIDIAN_NATS_REPLICAS: "3"/, '$1MERIDIAN_NATS_REPLICAS: "1"'),
    reported: /worker-a: MERIDIAN_NATS_REPLICAS is not 3/,
  },
  {
    what: "a peer's metrics on loopback (its default)",
    file: "docker-compose.yml",
    edit: (t) => t.replace(/(peer-b:[\s\S]*?) {6}MERIDIAN_METRICS_HOST: 0\.0\.0\.0\n/, "$1"),
    reported: /peer-b: listens on 127\.0\.0\.1, which other containers cannot reach/,
  },
  {
    what: "a region without a certificate",
    file: "docker-compose.yml",
    edit: (t) => t.replace('"a", "b", "c", "front-door"', '"a", "b", "front-door"'),
    reported: /mesh.json region c: no \/secrets\/certs\/c\.crt/,
    fresh: true,
  },
  {
    what: "a file docker-compose refuses",
    file: "docker-compose.yml",
    edit: (t) => t.replace("services:\n", "services:\n  bad: [\n"),
    reported: /docker-compose config: exit [1-9]/,
  },
];

test("deploy/compose: each broken copy is reported", (t) => {
  const dir = tempDir(cleanupStack(t));
  const volumesDir = join(dir, "volumes");
  for (const [i, b] of BROKEN.entries()) {
    // The certificates and secrets are made once, by the first copy's check.
    const problems = checkCompose(brokenCopy(dir, b.file, b.edit), {
      volumesDir: b.fresh === true ? join(dir, `volumes-${i}`) : volumesDir,
      oneShots: i === 0 || b.fresh === true,
    });
    assert.match(
      problems.join("\n"),
      b.reported,
      `${b.what}: ${problems.join("\n") || "(nothing reported)"}`,
    );
  }
});

test("deploy/compose: region a's three nats-servers, run from its files, form a cluster that takes the node's R3 stream", async (t) => {
  const after = cleanupStack(t);
  const dir = tempDir(after);
  const volumesDir = join(dir, "volumes");
  assert.deepEqual(checkCompose(COMPOSE, { volumesDir }), []);
  const generated = join(volumesDir, "nats-config");
  // The container's files, with each server's ports moved to free loopback ones and the
  // service names the routes use (nats-a-K:6222) pointed at them: nothing else changes.
  const ports: Array<{ client: number; route: number; http: number }> = [];
  for (let k = 1; k <= 3; k++)
    ports.push({ client: await freePort(), route: await freePort(), http: await freePort() });
  const cluster = readFileSync(join(generated, "cluster-a.conf"), "utf8").replace(
    /@nats-a-(\d):6222/g,
    (_, k: string) => `@127.0.0.1:${ports[Number(k) - 1]!.route}`,
  );
  assert.equal((cluster.match(/@127\.0\.0\.1:/g) ?? []).length, 3, "the routes name the three servers");
  const conf = readFileSync(join(COMPOSE, "nats", "a.conf"), "utf8");
  for (const [i, p] of ports.entries()) {
    const root = join(dir, `nats-a-${i + 1}`);
    mkdirSync(join(root, "generated"), { recursive: true });
    cpSync(join(generated, "authorization-a.conf"), join(root, "generated", "authorization-a.conf"));
    writeFileSync(join(root, "generated", "cluster-a.conf"), cluster);
    const text = conf
      .replace(/^port: 4222$/m, `port: ${p.client}`)
      .replace(/^http_port: 8222$/m, `http_port: ${p.http}`)
      .replace("store_dir: /data", `store_dir: ${JSON.stringify(join(root, "data"))}`)
      .replace("listen: 0.0.0.0:6222", `listen: 127.0.0.1:${p.route}`);
    assert.equal((text.match(new RegExp(`${p.client}|${p.http}|${p.route}`, "g")) ?? []).length, 3);
    writeFileSync(join(root, "nats.conf"), text);
    const child = spawn("nats-server", ["-c", join(root, "nats.conf")], {
      env: { ...process.env, NATS_SERVER_NAME: `nats-a-${i + 1}` },
      stdio: "ignore",
    });
    after(
      () =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once("exit", () => resolve());
          child.kill("SIGKILL");
        }),
    );
  }
  // Each server listening on its client port before anyone connects: a connection refused
  // because a server has not bound its port yet would prove nothing.
  const listening = (port: number) =>
    new Promise<boolean>((resolve) => {
      const socket = createConnection({ host: "127.0.0.1", port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
  for (const p of ports) await eventually(() => listening(p.client), 20_000, 100);
  const urls = ports.map((p) => `nats://127.0.0.1:${p.client}`);
  const secrets = join(volumesDir, "secrets", "nats-auth");
  const operator = { seedFile: join(secrets, "operator.seed"), inboxPrefix: inboxPrefixOf("operator") };
  // Anonymous clients are refused: the generated authorization is in force.
  await assert.rejects(connect({ servers: urls[0]!, reconnect: false, timeout: 2_000 }));
  const nc = await connect({
    servers: urls,
    ...natsConnectOptions(operator),
    inboxPrefix: operator.inboxPrefix,
  });
  after(() => nc.close());
  await waitForJetStreamAs(nc);
  // The node of a, as docker-compose.yml signs it in, creates its stream with 3 replicas.
  const log = JetStreamLog.open({
    servers: urls,
    region: "a",
    name: "deploy-compose-test",
    nats: { seedFile: join(secrets, "a-node.seed"), inboxPrefix: inboxPrefixOf("a-node"), replicas: 3 },
    logger: silentLogger,
  });
  after(() => log.close());
  await log.ready();
  const info = await (await jetstreamManager(nc)).streams.info("MERIDIAN_A");
  assert.equal(info.config.num_replicas, 3);
  assert.equal(info.cluster?.replicas?.length, 2, "a leader and two followers");
  assert.equal(info.cluster?.name, "meridian-a");
});

/** waitForJetStream for an authenticated connection: a meta leader is elected (bounded). */
async function waitForJetStreamAs(nc: Awaited<ReturnType<typeof connect>>): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      await (await jetstreamManager(nc)).getAccountInfo();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}
