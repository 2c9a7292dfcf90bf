/**
 * An external endpoint's credentials file (issue 17): the admin event names
 * only the file's path; the machine that talks to the endpoint (the CLI, a
 * worker) reads the secret here, so no secret is ever in the log.
 *
 * Format (one of, decided by the content):
 * - JSON `{"username": "...", "password": "..."}` or `{"token": "..."}`;
 * - one line `username:password` (the first colon splits);
 * - one line without a colon: a bearer token sent as is.
 * Trailing newlines are ignored; an empty file, an empty username or
 * password, or JSON of another shape is refused. A file readable by group or
 * others is accepted with a warning (`loose`) that `endpoint add` prints.
 */
import { readFileSync, statSync } from "node:fs";
import { MeridianError } from "../protocol/errors.js";
import type { RegistryCredentials } from "./oci-registry-client.js";

export class CredentialsFileError extends MeridianError {
  override readonly code = "CREDENTIALS_FILE";
}

export function parseCredentials(text: string): RegistryCredentials {
  const trimmed = text.replace(/[\r\n]+$/, "");
  if (trimmed.trim() === "") throw new CredentialsFileError("credentials file is empty");
  if (trimmed.trimStart().startsWith("{")) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch {
      throw new CredentialsFileError("credentials file: invalid JSON");
    }
    const o = parsed as Record<string, unknown>;
    if (typeof o.token === "string" && o.token !== "") return { token: o.token };
    if (
      typeof o.username === "string" &&
      typeof o.password === "string" &&
      o.username !== "" &&
      o.password !== ""
    )
      return { username: o.username, password: o.password };
    throw new CredentialsFileError('credentials file: JSON needs {"username","password"} or {"token"}');
  }
  if (trimmed.includes("\n")) throw new CredentialsFileError("credentials file: more than one line");
  const colon = trimmed.indexOf(":");
  if (colon < 0) return { token: trimmed };
  const username = trimmed.slice(0, colon);
  const password = trimmed.slice(colon + 1);
  if (username === "" || password === "")
    throw new CredentialsFileError("credentials file: username:password with an empty part");
  return { username, password };
}

/** Read and parse a credentials file; `loose` when group or others may read it. */
export function readCredentialsFile(path: string): { credentials: RegistryCredentials; loose: boolean } {
  let text: string;
  let mode: number;
  try {
    mode = statSync(path).mode;
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new CredentialsFileError(`credentials file ${path}: ${(err as Error).message}`, { cause: err });
  }
  return { credentials: parseCredentials(text), loose: (mode & 0o077) !== 0 };
}
