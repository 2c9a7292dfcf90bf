/**
 * Starting a node with authentication on (node/config.ts `auth`): the first
 * system admin. Its token keys are read from files by
 * mesh-client/token-key-file.ts (a lone node creates its key when the file is
 * missing), shared with the control plane, which mints its own tokens.
 */
import { readFile } from "node:fs/promises";
import type { Logger } from "pino";
import type { Registry } from "../data/registry.js";
import { hashPassword } from "./passwords.js";

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
