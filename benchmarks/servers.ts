/**
 * The two registries under test, each started fresh on 127.0.0.1 with its own
 * temporary directories and stopped (by pid) afterwards:
 *
 * - CNCF Distribution: `docker-registry serve <config.yml>` with filesystem
 *   storage, log level error, access log off, deletes on, and the in-memory
 *   blob-descriptor cache of the Debian package's stock configuration.
 * - Meridian: a node child process (`node dist/node/server.js`) against its own
 *   nats-server, with default settings (so `storage.fsync` is on).
 *
 * With `auth` (the auth suite) both require credentials: Distribution its
 * htpasswd access controller (one bcrypt line of cost 10, htpasswd -B's
 * default, checked on every request), Meridian `MERIDIAN_AUTH=true` with the
 * system admin `admin` created from a password file at start and tokens that
 * live an hour (one token covers a run). The target is ready once `GET /v2/`
 * with those credentials answers 200.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import bcrypt from "bcryptjs";
import { startNatsServer } from "../cli/nats-server.js";
import { loadNodeConfig } from "../node/config.js";
import { distributionConfig } from "../testing/distribution.js";
import { freePort, NODE_ENTRY } from "../testing/harness.js";

export type TargetName = "meridian" | "distribution";

/** Every rate limit on, too high to refuse anything: what counting each request costs (issue 18). */
export const RATE_LIMITS_ON: Readonly<Record<string, string>> = {
  MERIDIAN_RATE_PULLS_PER_SECOND: "1000000000",
  MERIDIAN_RATE_PULL_BURST: "1000000000",
  MERIDIAN_RATE_PUSHES_PER_SECOND: "1000000000",
  MERIDIAN_RATE_PUSH_BURST: "1000000000",
  MERIDIAN_RATE_ADDRESS_PULLS_PER_SECOND: "1000000000",
  MERIDIAN_RATE_ADDRESS_PUSHES_PER_SECOND: "1000000000",
};

export interface Target {
  name: TargetName;
  url: string;
  /** The registry server process. */
  pid: number;
  /** Meridian's nats-server. */
  natsPid?: number;
  /** Settings worth recording with the results. */
  settings: Record<string, unknown>;
  /** The account every request must carry, when started with `auth`. */
  credentials?: Credentials;
  stop(): Promise<void>;
}

export interface Credentials {
  user: string;
  password: string;
}

/** The name Meridian gives the system admin it creates from a password file. */
export const MERIDIAN_ADMIN = "admin";
/** htpasswd -B's default cost, which Distribution pays on every request. */
export const HTPASSWD_BCRYPT_COST = 10;
const TOKEN_TTL_SECONDS = 3600;

export function basicAuthorization(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.user}:${c.password}`).toString("base64")}`;
}

export interface TargetOptions {
  /** Meridian: override storage.fsync (default: the node's default). */
  fsync?: boolean;
  /** Meridian: run the node with --cpu-prof into this directory. */
  cpuProfDir?: string;
  /** Require this password (Meridian's user is always `admin`). */
  auth?: { password: string };
  /** Meridian: more MERIDIAN_* settings (the S3 suite's storage.type=s3 and storage.s3.*), recorded in `settings.env`. */
  env?: Record<string, string>;
}

export function startTarget(name: TargetName, options: TargetOptions = {}): Promise<Target> {
  return name === "meridian" ? startMeridian(options) : startDistribution(options);
}

function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function distributionVersion(): string {
  const r = spawnSync("docker-registry", ["--version"], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : "unknown";
}

async function startDistribution(options: TargetOptions): Promise<Target> {
  const dir = tempDir("meridian-bench-dist-");
  try {
    const port = await freePort();
    const config = join(dir, "config.yml");
    mkdirSync(join(dir, "data"));
    const credentials = options.auth && { user: "bench", password: options.auth.password };
    const htpasswd = join(dir, "htpasswd");
    if (credentials !== undefined) {
      // What `htpasswd -Bbn` writes; bcryptjs so that apache2-utils is not needed.
      const hash = bcrypt.hashSync(credentials.password, HTPASSWD_BCRYPT_COST);
      writeFileSync(htpasswd, `${credentials.user}:${hash}\n`, { mode: 0o600 });
    }
    writeFileSync(
      config,
      distributionConfig({
        root: join(dir, "data"),
        port,
        blobDescriptorCache: true,
        ...(credentials === undefined ? {} : { htpasswd }),
      }),
    );
    const child = spawn("docker-registry", ["serve", config], { stdio: ["ignore", "ignore", "pipe"] });
    const stopChild = track(child, "docker-registry");
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitForHttp(`${url}/v2/`, child, stopChild.stderr, credentials);
    } catch (err) {
      await stopChild.stop();
      throw err;
    }
    return {
      name: "distribution",
      url,
      pid: child.pid!,
      settings: {
        version: distributionVersion(),
        storage: "filesystem (no fsync)",
        cache: "blobdescriptor: inmemory",
        log: "error, access log off",
        auth:
          credentials === undefined
            ? "none"
            : `htpasswd (bcrypt cost ${HTPASSWD_BCRYPT_COST}, checked on every request)`,
      },
      ...(credentials === undefined ? {} : { credentials }),
      async stop() {
        await stopChild.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

async function startMeridian(options: TargetOptions): Promise<Target> {
  const dir = tempDir("meridian-bench-node-");
  let stopNats: (() => Promise<void>) | undefined;
  try {
    const nats = await startNatsServer({
      port: await freePort(),
      storeDir: join(dir, "nats"),
      name: `bench-${process.pid}`,
    });
    stopNats = () => nats.stop();
    const port = await freePort();
    // Only the settings a test run needs; the rest stays at the node's defaults.
    const env: Record<string, string> = {
      MERIDIAN_REGION: "bench",
      MERIDIAN_DATA_DIR: join(dir, "node"),
      MERIDIAN_LISTEN_HOST: "127.0.0.1",
      MERIDIAN_LISTEN_PORT: String(port),
      MERIDIAN_NATS_SERVERS: nats.url,
      MERIDIAN_LOG_LEVEL: "warn",
      ...(options.fsync !== undefined ? { MERIDIAN_STORAGE_FSYNC: String(options.fsync) } : {}),
      ...options.env,
    };
    const credentials = options.auth && { user: MERIDIAN_ADMIN, password: options.auth.password };
    if (credentials !== undefined) {
      const passwordFile = join(dir, "admin-password");
      writeFileSync(passwordFile, `${credentials.password}\n`, { mode: 0o600 });
      Object.assign(env, {
        MERIDIAN_AUTH: "true",
        MERIDIAN_ADMIN_PASSWORD_FILE: passwordFile,
        MERIDIAN_TOKEN_TTL_SECONDS: String(TOKEN_TTL_SECONDS),
      });
    }
    const config = loadNodeConfig({ env });
    const inherited = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith("MERIDIAN_")),
    );
    const nodeArgs = options.cpuProfDir ? ["--cpu-prof", "--cpu-prof-dir", options.cpuProfDir] : [];
    const child = spawn(process.execPath, [...nodeArgs, NODE_ENTRY], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...inherited, ...env },
    });
    const stopChild = track(child, "meridian node");
    let url: string;
    try {
      url = await waitForListening(child, stopChild.stderr);
      // "listening" comes before the JetStream log is ready; writes answer 503 until then.
      await waitForWritable(url, child, stopChild.stderr);
      // The admin is created at start, as an event the view applies a moment later.
      if (credentials !== undefined) await waitForHttp(`${url}/v2/`, child, stopChild.stderr, credentials);
    } catch (err) {
      await stopChild.stop();
      throw err;
    }
    return {
      name: "meridian",
      url,
      pid: child.pid!,
      natsPid: nats.pid,
      settings: {
        fsync: config.storage.fsync,
        logLevel: config.logLevel,
        nats: "nats-server (JetStream, file store) on its own temp dir",
        cpuProfile: options.cpuProfDir ?? false,
        ...(options.env === undefined ? {} : { env: options.env }),
        auth:
          credentials === undefined
            ? "off"
            : `on (scrypt N=2^15 admin password, verified credentials cached; token TTL ${TOKEN_TTL_SECONDS} s)`,
      },
      ...(credentials === undefined ? {} : { credentials }),
      async stop() {
        // SIGTERM: a graceful close, so that --cpu-prof writes its profile.
        await stopChild.stop();
        await nats.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await stopNats?.();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Keep the last stderr of a child, and a stop that SIGTERMs, then SIGKILLs after 10 s. */
function track(child: ChildProcess, what: string): { stderr: () => string; stop: () => Promise<void> } {
  let stderr = "";
  child.stderr?.on("data", (d) => {
    stderr = (stderr + d).slice(-4000);
  });
  child.on("error", (err) => {
    stderr += `\n${what}: ${err.message}`;
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    stderr: () => stderr,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

async function waitForHttp(
  url: string,
  child: ChildProcess,
  stderr: () => string,
  credentials?: Credentials,
): Promise<void> {
  const deadline = Date.now() + 15_000;
  const headers = credentials === undefined ? undefined : { authorization: basicAuthorization(credentials) };
  // Meridian counts a refused password against its failed-login limit (5 a minute): poll gently.
  const pollMs = credentials === undefined ? 50 : 250;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`registry exited with ${child.exitCode}: ${stderr()}`);
    try {
      const res = await fetch(url, { headers });
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
  throw new Error(`registry did not answer ${url} within 15 s: ${stderr()}`);
}

async function waitForWritable(url: string, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`node exited with ${child.exitCode}: ${stderr()}`);
    try {
      const res = await fetch(`${url}/healthz`);
      const body = (await res.json()) as { writable?: boolean };
      if (body.writable === true) return;
    } catch {
      // not ready yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`node at ${url} not writable within 20 s: ${stderr()}`);
}

function waitForListening(child: ChildProcess, stderr: () => string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`node did not start: ${stderr()}`)), 20_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`node exited with ${code}: ${stderr()}`));
    });
    createInterface({ input: child.stdout! }).on("line", (line) => {
      if (line.includes('"listening"')) {
        clearTimeout(timer);
        resolve(JSON.parse(line).registry);
      }
    });
  });
}
