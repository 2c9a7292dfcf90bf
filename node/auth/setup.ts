/**
 * Starting a node with authentication on (node/config.ts `auth`): the first
 * system admin; and refusing to start one without it over data that had it. Its token keys are read from files by
 * mesh-client/token-key-file.ts (a lone node creates its key when the file is
 * missing), shared with the control plane, which mints its own tokens.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import type { Logger } from "pino";
import type { NodeConfig } from "../config.js";
import type { Registry } from "../data/registry.js";
import type { MetadataView } from "../data/view.js";
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

/**
 * Issue 11, finding 9: once a node's data has identities (users in its view,
 * or the mesh's token key file), starting it without authentication would
 * silently reopen everything. Refused (StartRefusedError) unless the operator
 * says so (`auth.allowUnauthenticated`, MERIDIAN_NO_AUTH=true, `meridian up
 * --no-auth`); then logged at warn and, by the caller, audited. Returns what
 * the identities are when the start goes ahead without authentication.
 */
export async function unauthenticatedStart(
  config: Readonly<NodeConfig>,
  view: MetadataView,
  log: Logger,
): Promise<string | undefined> {
  if (config.auth.enabled) return undefined;
  const users = (await view.identity.users()).length;
  const found: string[] = [];
  if (users > 0) found.push(`its view has ${users} user${users === 1 ? "" : "s"}`);
  if (existsSync(config.auth.tokenKeyFile)) found.push(`the token key ${config.auth.tokenKeyFile} exists`);
  if (found.length === 0) return undefined;
  const what = found.join(" and ");
  if (!config.auth.allowUnauthenticated) {
    throw new StartRefusedError(
      `region ${config.region}: refusing to start without authentication: ${what}, so this data was served with authentication. ` +
        "Start with authentication (MERIDIAN_AUTH=true, `meridian up --auth`), or say explicitly that everything may be open " +
        "(MERIDIAN_NO_AUTH=true, auth.allowUnauthenticated, `meridian up --no-auth`).",
    );
  }
  log.warn(
    { identities: what },
    "starting WITHOUT authentication although the data has identities (explicit override)",
  );
  return what;
}

/** A start the node refuses by policy (not a fault): main prints it and exits 1. */
export class StartRefusedError extends Error {}
