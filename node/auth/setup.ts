/**
 * Starting a node with authentication on (node/config.ts `auth`): its token
 * keys, read from files (a lone node creates its key when the file is
 * missing), and the first system admin.
 */
import { createPrivateKey, createPublicKey } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import type { Logger } from "pino";
import type { Registry } from "../data/registry.js";
import { hashPassword } from "./passwords.js";
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

/**
 * Create the system admin `admin` with the password in `passwordFile` (its
 * first line) unless a user `admin` exists. Several regions starting at once
 * may each create it; the hashes differ only in salt and the last write wins.
 */
export async function ensureAdmin(registry: Registry, passwordFile: string, logger: Logger): Promise<void> {
  if ((await registry.view.identity.user("admin")) !== undefined) return;
  const password = (await readFile(passwordFile, "utf8")).split(/\r?\n/, 1)[0]!;
  if (password.length < 8) throw new Error(`${passwordFile}: the admin password needs at least 8 characters`);
  await registry.commitAdmin(
    { type: "user.set", name: "admin", passwordHash: await hashPassword(password), systemAdmin: true },
    "system",
  );
  logger.info({ passwordFile }, "system admin `admin` created");
}
