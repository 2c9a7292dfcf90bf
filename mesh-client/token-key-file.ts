/**
 * The mesh's token keys from files (node/config.ts `auth.tokenKeyFile`,
 * `auth.retiredKeyFiles`): read by the nodes, which verify and issue tokens,
 * and by the control plane, which mints its own service tokens
 * (./service-token.ts); written by `meridian up --auth` and by a lone node
 * whose key file is missing.
 */
import { createPrivateKey, createPublicKey } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import type { Logger } from "pino";
import { TokenKeys } from "./tokens.js";

/** The mesh's token keys: the signing key (PKCS#8 PEM file) and retired public keys (SPKI PEM files). */
export async function loadTokenKeys(options: {
  tokenKeyFile: string;
  retiredKeyFiles: readonly string[];
  create: boolean;
  logger?: Logger;
}): Promise<TokenKeys> {
  if (!existsSync(options.tokenKeyFile)) {
    if (!options.create) throw new Error(`token key ${options.tokenKeyFile} does not exist`);
    await writeTokenKey(options.tokenKeyFile);
    // A notice of a first start, not a fault: start-up stays quiet (protocol/startup-grace.ts).
    options.logger?.info({ file: options.tokenKeyFile }, "token signing key created");
  }
  const privatePem = await readFile(options.tokenKeyFile, "utf8");
  const publicPem = createPublicKey(createPrivateKey(privatePem)).export({ type: "spki", format: "pem" });
  const retired = await Promise.all(options.retiredKeyFiles.map((f) => readFile(f, "utf8")));
  return TokenKeys.fromPem(privatePem, publicPem as string, retired);
}

/** A new ES256 signing key at `file` (mode 0600), for `meridian up --auth` and lone nodes. */
export async function writeTokenKey(file: string): Promise<void> {
  const { privatePem } = await TokenKeys.generate();
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, privatePem, { mode: 0o600, flag: "wx" }).catch((err) => {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  });
}
