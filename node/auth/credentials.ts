/**
 * Credentials as they travel and as they are kept: a Basic header's
 * `user:password`, the Bearer challenge, the keys under which verified
 * passwords and tokens are cached (never a password in clear), and the
 * fingerprint a token carries of its holder's credential.
 */
import { createHash } from "node:crypto";
import { UnauthorizedError } from "../../protocol/errors.js";

/** A verified token's cache key: the last 43 characters of its signature. */
export function tokenKey(token: string): string {
  return token.slice(-43);
}

/** The verified-credential cache's key: a hash, so no password is kept in clear. */
export function credentialKey(name: string, password: string): string {
  return createHash("sha256").update(name).update("\0").update(password).digest("base64url");
}

/** What a token records of its holder's credential: a short hash of the stored KDF hash (salted: every change differs). */
export function credentialFingerprint(hash: string): string {
  return createHash("sha256").update(hash).digest("base64url").slice(0, 16);
}

/** `user:password` from a Basic credential; UnauthorizedError when malformed. */
export function decodeBasic(value: string): { name: string; password: string } {
  const text = Buffer.from(value, "base64").toString("utf8");
  const colon = text.indexOf(":");
  if (value === "" || colon <= 0) throw new UnauthorizedError("malformed basic credentials");
  return { name: text.slice(0, colon), password: text.slice(colon + 1) };
}

/**
 * The `WWW-Authenticate` challenge sending a client to the token endpoint:
 * `Bearer realm="…",service="…"[,scope="…"][,error="insufficient_scope"]`.
 */
export function bearerChallenge(options: {
  realm: string;
  service: string;
  scope?: string;
  insufficientScope?: boolean;
}): string {
  let value = `Bearer realm="${options.realm}",service="${options.service}"`;
  if (options.scope !== undefined) value += `,scope="${options.scope}"`;
  if (options.insufficientScope === true) value += `,error="insufficient_scope"`;
  return value;
}
