/**
 * What every process's logger shares: the secrets it never writes. Each
 * process (node/server.ts, control-plane/peer.ts, control-plane/front-door.ts,
 * replication/main.ts) builds its one pino logger from `loggerOptions`, so a
 * credential that reaches a log line by accident — a request's Authorization
 * header, a password in a login body, a token in an error's fields — comes
 * out as "[redacted]". Pure data (pino is imported for its types only).
 *
 * pino's paths match at fixed depths (`*` is one level), so each field name
 * is listed at the top level and one and two levels down: `{ password }`,
 * `{ user: { password } }`, `{ req: { headers: { authorization } } }`.
 */
import type { LoggerOptions } from "pino";

/** Field names whose values are secrets wherever they appear (up to three levels deep). */
export const SECRET_FIELDS: readonly string[] = [
  "authorization",
  '"proxy-authorization"',
  "cookie",
  '"set-cookie"',
  "password",
  "newPassword",
  "passwordHash",
  "secret",
  "secretHash",
  "clientSecret",
  "token",
  "accessToken",
  "access_token",
  "refreshToken",
  "refresh_token",
  "privateKey",
];

const CENSOR = "[redacted]";

/** pino's `redact` option for every Meridian process. */
export const REDACT: { paths: string[]; censor: string } = {
  paths: SECRET_FIELDS.flatMap((f) => {
    const quoted = f.startsWith('"');
    const step = quoted ? `[${f}]` : `.${f}`;
    return [quoted ? step : f, `*${step}`, `*.*${step}`];
  }),
  censor: CENSOR,
};

/** A process logger's options: level, `pid` on every line, secrets redacted. */
export function loggerOptions(level: string): LoggerOptions {
  return { level, base: { pid: process.pid }, redact: REDACT };
}
