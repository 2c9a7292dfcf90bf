/**
 * `meridian up`: a local mesh on 127.0.0.1, every part a separate process.
 * Per region (index i, base port B): nats-server with JetStream on B+10i+1 and
 * a registry node on B+10i. Data lives under <data>/<region>/ and survives
 * restarts; process logs go to <data>/<region>/{nats,node}.log.
 *
 * stdout is machine-readable, one JSON object per line:
 *   {"region":"a","registry":"http://127.0.0.1:5000","nats":"nats://127.0.0.1:5001","pids":{"nats":…,"node":…}}
 *   {"ready":true}
 * SIGINT/SIGTERM stop every process (nodes first, then nats-servers); if any
 * process dies on its own, the rest are stopped and `up` exits non-zero.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { type NatsServerProcess, startNatsServer } from "./nats-server.js";

export interface UpOptions {
  regions: string[];
  basePort: number;
  dataDir: string;
}

const NODE_ENTRY = join(dirname(fileURLToPath(import.meta.url)), "..", "node", "server.js");

export async function up(options: UpOptions): Promise<number> {
  const dataDir = resolve(options.dataDir);
  const natsServers: NatsServerProcess[] = [];
  const nodes: ChildProcess[] = [];
  let stopping = false;
  let resolveDone: (code: number) => void = () => {};
  const done = new Promise<number>((r) => {
    resolveDone = r;
  });

  const stopAll = async (code: number) => {
    if (stopping) return;
    stopping = true;
    await Promise.all(nodes.map((child) => stopChild(child)));
    await Promise.all(natsServers.map((n) => n.stop()));
    resolveDone(code);
  };
  process.once("SIGINT", () => void stopAll(0));
  process.once("SIGTERM", () => void stopAll(0));

  try {
    for (const [i, region] of options.regions.entries()) {
      const regionDir = join(dataDir, region);
      mkdirSync(regionDir, { recursive: true });
      const registryPort = options.basePort + 10 * i;
      const natsPort = registryPort + 1;
      const nats = await startNatsServer({
        port: natsPort,
        storeDir: join(regionDir, "nats"),
        name: `meridian-${region}`,
        logFile: join(regionDir, "nats.log"),
      });
      natsServers.push(nats);
      nats.child.once("exit", (code, signal) => {
        if (!stopping) {
          process.stderr.write(
            `meridian up: nats-server of ${region} exited (${code ?? signal}); stopping\n`,
          );
          void stopAll(1);
        }
      });
      const { child, url } = await startNodeProcess(region, regionDir, registryPort, nats.url);
      nodes.push(child);
      child.once("exit", (code, signal) => {
        if (!stopping) {
          process.stderr.write(`meridian up: node of ${region} exited (${code ?? signal}); stopping\n`);
          void stopAll(1);
        }
      });
      process.stdout.write(
        `${JSON.stringify({ region, registry: url, nats: nats.url, pids: { nats: nats.pid, node: child.pid } })}\n`,
      );
    }
    process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
  } catch (err) {
    process.stderr.write(`meridian up: ${(err as Error).message}\n`);
    await stopAll(1);
  }
  return done;
}

async function startNodeProcess(
  region: string,
  regionDir: string,
  port: number,
  natsUrl: string,
): Promise<{ child: ChildProcess; url: string }> {
  const log = createWriteStream(join(regionDir, "node.log"), { flags: "a" });
  const child = spawn(process.execPath, [NODE_ENTRY], {
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      ...process.env,
      MERIDIAN_REGION: region,
      MERIDIAN_DATA_DIR: regionDir,
      MERIDIAN_LISTEN_HOST: "127.0.0.1",
      MERIDIAN_LISTEN_PORT: String(port),
      MERIDIAN_NATS_SERVERS: natsUrl,
    },
  });
  child.stderr!.pipe(log);
  const lines = createInterface({ input: child.stdout! });
  return new Promise((resolvePromise, reject) => {
    const onExit = (code: number | null) =>
      reject(
        new Error(
          `node of ${region} exited with ${code} before listening (see ${join(regionDir, "node.log")})`,
        ),
      );
    child.once("exit", onExit);
    lines.on("line", (line) => {
      try {
        const msg = JSON.parse(line);
        if (msg.event === "listening") {
          child.off("exit", onExit);
          resolvePromise({ child, url: msg.registry });
        }
      } catch {
        // not a status line
      }
    });
  });
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolvePromise) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    child.once("exit", () => {
      clearTimeout(timer);
      resolvePromise();
    });
    child.kill("SIGTERM");
  });
}
