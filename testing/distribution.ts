/**
 * A real CNCF Distribution (Debian's `docker-registry`) for tests: filesystem
 * storage in a temp dir, on 127.0.0.1, optionally with htpasswd auth (a
 * bcrypt hash, what `htpasswd -Bbn` writes). Stopped by its pid in cleanup.
 * AWS_CA_BUNDLE is removed from its environment (Distribution's storage
 * drivers read it and refuse to start on a bundle they cannot load).
 */
import { spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { get as httpGet } from "node:http";
import { get as httpsGet } from "node:https";
import { join } from "node:path";
import bcrypt from "bcryptjs";
import { type After, tempDir } from "./harness.js";
import { freePort } from "./ports.js";

export interface Distribution {
  url: string;
  /** host:port, as skopeo's docker:// references want it. */
  host: string;
  pid: number;
  /** Its filesystem storage's root (tests reach into it to lose or corrupt a blob). */
  root: string;
}

export async function startDistribution(
  after: After,
  options: {
    user?: string;
    password?: string;
    /** Distribution's token auth: tokens from `realm`, signed by the key of the PEM certificate `rootCertFile`. */
    token?: { realm: string; service: string; issuer: string; rootCertFile: string };
    /** Serve https with this certificate and key (PEM files). */
    tls?: { certFile: string; keyFile: string };
  } = {},
): Promise<Distribution> {
  const dir = tempDir(after, "meridian-distribution-");
  const port = await freePort();
  mkdirSync(join(dir, "data"));
  const htpasswd = join(dir, "htpasswd");
  if (options.user !== undefined)
    writeFileSync(htpasswd, `${options.user}:${bcrypt.hashSync(options.password ?? "", 4)}\n`, {
      mode: 0o600,
    });
  const config = join(dir, "config.yml");
  writeFileSync(
    config,
    distributionConfig({
      root: join(dir, "data"),
      port,
      ...(options.user === undefined ? {} : { htpasswd }),
      ...(options.tls === undefined ? {} : { tls: options.tls }),
      ...(options.token === undefined ? {} : { token: options.token }),
    }),
  );
  const env = { ...process.env };
  delete env.AWS_CA_BUNDLE;
  const child = spawn("docker-registry", ["serve", config], { stdio: ["ignore", "ignore", "pipe"], env });
  let stderr = "";
  child.stderr!.on("data", (d) => {
    stderr += d;
  });
  after(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    process.kill(child.pid!, "SIGKILL");
    await exited;
  });
  const url = `${options.tls === undefined ? "http" : "https"}://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited: ${stderr}`);
    try {
      const status = await answerStatus(`${url}/v2/`);
      if (status === 200 || status === 401)
        return { url, host: `127.0.0.1:${port}`, pid: child.pid!, root: join(dir, "data") };
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`docker-registry did not answer: ${stderr}`);
}

/** The status of a GET (https without verification: readiness only). */
function answerStatus(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const get = url.startsWith("https:") ? httpsGet : httpGet;
    const req = get(url, { rejectUnauthorized: false, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.once("error", reject);
  });
}

/**
 * Distribution's config.yml for a filesystem store under `root`, served on
 * 127.0.0.1:`port`, deletes on, logs quiet: with an htpasswd file, Distribution's
 * token auth, TLS, and the in-memory blob descriptor cache as asked. The
 * tests' registries (above) and the benchmarks' (benchmarks/servers.ts) use it.
 */
export function distributionConfig(o: {
  root: string;
  port: number;
  htpasswd?: string;
  token?: { realm: string; service: string; issuer: string; rootCertFile: string };
  tls?: { certFile: string; keyFile: string };
  blobDescriptorCache?: boolean;
}): string {
  return [
    "version: 0.1",
    "log:",
    "  level: error",
    "  accesslog:",
    "    disabled: true",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${o.root}`,
    "  delete:",
    "    enabled: true",
    ...(o.blobDescriptorCache === true ? ["  cache:", "    blobdescriptor: inmemory"] : []),
    "http:",
    `  addr: 127.0.0.1:${o.port}`,
    ...(o.tls === undefined
      ? []
      : ["  tls:", `    certificate: ${o.tls.certFile}`, `    key: ${o.tls.keyFile}`]),
    ...(o.htpasswd === undefined
      ? []
      : ["auth:", "  htpasswd:", "    realm: basic-realm", `    path: ${o.htpasswd}`]),
    ...(o.token === undefined
      ? []
      : [
          "auth:",
          "  token:",
          `    realm: ${o.token.realm}`,
          `    service: ${o.token.service}`,
          `    issuer: ${o.token.issuer}`,
          `    rootcertbundle: ${o.token.rootCertFile}`,
        ]),
    "",
  ].join("\n");
}
