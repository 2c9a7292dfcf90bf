/**
 * NATS client settings (data/nats-connect.ts): validation, and the settings
 * for an external NATS that a `meridian up` does not start: a user with a
 * password file over mutual TLS, against a real nats-server that requires
 * both. The log connects and appends with them; without the client
 * certificate, or with a wrong password, the server refuses.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { connect } from "@nats-io/transport-node";
import { ensureMeshCerts } from "../../cli/certs.js";
import { canConnect, natsServerBinary } from "../../cli/nats-server.js";
import { cleanupStack, freePort, silentLogger, tempDir } from "../../testing/harness.js";
import { loadNodeConfig } from "../config.js";
import { JetStreamLog } from "../data/jetstream-log.js";
import {
  checkNatsClient,
  describeNatsClient,
  natsClientFromEnv,
  natsConnectOptions,
} from "../data/nats-connect.js";

const cleanup = cleanupStack({ after });

describe("settings", () => {
  test("every problem is listed: pairs, one kind of credential, files that exist", () => {
    const dir = tempDir(cleanup);
    const seed = join(dir, "seed");
    writeFileSync(seed, "SU…\n");
    const problems: string[] = [];
    checkNatsClient(
      {
        seedFile: seed,
        user: "u",
        inboxPrefix: "_INBOX.>",
        tls: { certFile: join(dir, "missing.crt") },
      },
      problems,
    );
    assert.deepEqual(
      problems.sort(),
      [
        `nats.tls.certFile ${join(dir, "missing.crt")}: ENOENT`,
        "nats.inboxPrefix: subject tokens without wildcards or spaces",
        "nats.tls: certFile and keyFile go together (both or neither)",
        "nats: one of seedFile, credsFile or user+passwordFile, not several",
        "nats: user and passwordFile go together (both or neither)",
      ].sort(),
    );
  });

  test("the node reads them from MERIDIAN_NATS_*, and logs name the kind, never the secret", () => {
    const dir = tempDir(cleanup);
    const seed = join(dir, "node.seed");
    writeFileSync(seed, "SUSECRET\n");
    const config = loadNodeConfig({
      env: { MERIDIAN_NATS_SEED_FILE: seed, MERIDIAN_NATS_INBOX_PREFIX: "_INBOX_a-node" },
    });
    assert.equal(config.nats.seedFile, seed);
    assert.equal(config.nats.inboxPrefix, "_INBOX_a-node");
    assert.deepEqual(config.nats.servers, ["nats://127.0.0.1:4222"]);
    assert.equal(describeNatsClient(config.nats), `nkey ${seed}`);
    assert.ok(!JSON.stringify(config).includes("SUSECRET"));
    assert.throws(
      () => loadNodeConfig({ env: { MERIDIAN_NATS_USER: "u" } }),
      /user and passwordFile go together/,
    );
    assert.deepEqual(natsClientFromEnv({}), { tls: {} });
  });
});

describe("an external NATS with a password and mutual TLS", () => {
  test("the log connects and appends; without a client certificate or with a wrong password it is refused", async () => {
    const dir = tempDir(cleanup);
    const certs = await ensureMeshCerts(join(dir, "certs"), ["server", "client", "stranger"]);
    const port = await freePort();
    const conf = join(dir, "nats.conf");
    writeFileSync(
      conf,
      `${JSON.stringify({
        authorization: { users: [{ user: "meridian", password: "s3cret-pass" }] },
        tls: {
          cert_file: certs.regions.server!.cert,
          key_file: certs.regions.server!.key,
          ca_file: certs.ca,
          verify: true,
        },
      }).slice(1, -1)}\n`,
    );
    const child: ChildProcess = spawn(
      natsServerBinary(),
      ["-c", conf, "-a", "127.0.0.1", "-p", String(port), "-js", "-sd", join(dir, "store")],
      { stdio: "ignore" },
    );
    cleanup(() => {
      child.kill("SIGKILL");
    });
    for (let i = 0; i < 200 && !(await canConnect(port)); i++) await new Promise((r) => setTimeout(r, 50));
    const passwordFile = join(dir, "password");
    writeFileSync(passwordFile, "s3cret-pass\n", { mode: 0o600 });
    const wrongFile = join(dir, "wrong");
    writeFileSync(wrongFile, "guess\n", { mode: 0o600 });
    const url = `tls://127.0.0.1:${port}`;
    const tls = {
      caFile: certs.ca,
      certFile: certs.regions.client!.cert,
      keyFile: certs.regions.client!.key,
    };

    const log = JetStreamLog.open({
      servers: [url],
      region: "ext",
      name: "nats-connect-test",
      logger: silentLogger,
      nats: { user: "meridian", passwordFile, tls },
    });
    cleanup(() => log.close());
    await log.ready();
    const { seq } = await log.append({
      id: crypto.randomUUID(),
      type: "policy.deleted",
      origin: "ext",
      at: new Date().toISOString(),
      name: "p",
    } as never);
    assert.equal(seq, 1);

    const attempt = (settings: Parameters<typeof natsConnectOptions>[0]) =>
      connect({ ...natsConnectOptions(settings), servers: [url], reconnect: false, timeout: 5_000 }).then(
        (nc) => nc.close().then(() => "connected"),
        (err: Error) => err.message,
      );
    assert.notEqual(
      await attempt({ user: "meridian", passwordFile, tls: { caFile: certs.ca } }),
      "connected",
    );
    assert.notEqual(await attempt({ user: "meridian", passwordFile: wrongFile, tls }), "connected");
    assert.equal(await attempt({ user: "meridian", passwordFile, tls }), "connected");
  });
});
