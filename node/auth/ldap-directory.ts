/**
 * Talking to the directory (issue 18): one sign-in is one connection,
 *
 *   connect (ldaps:// or ldap:// + StartTLS) → bind as the service account
 *   → search the user (userBase, userFilter with the name escaped) → read
 *   its groups (memberOf, or a search under groupBase) → bind as the user
 *   with the password typed → unbind
 *
 * on ldapts. The password is sent only in the user's bind, never kept or
 * logged. An empty password is refused before anything is sent: a simple
 * bind with a DN and no password is an "unauthenticated bind" (RFC 4513
 * §5.1.2) that many directories answer with success.
 *
 * Answers: the user's DN and group DNs; `undefined` when the name matches
 * no entry (or several: ambiguous, refused) or the password is wrong;
 * DirectoryUnavailableError when the directory cannot say (no connection,
 * a TLS failure, a timeout, the service account refused, any other LDAP
 * error), which the HTTP layer answers 503 with Retry-After. Bounded: a
 * connection within `connectTimeoutMs`, each operation within `timeoutMs`
 * (ldapts), and the whole sign-in within their sum (a directory that
 * accepts connections and then stops answering, SIGSTOPped, cannot hold a
 * login longer; the socket is destroyed). At most MAX_CONCURRENT sign-ins
 * talk to the directory at once per node, MAX_WAITING wait; more are 429.
 */
import { readFileSync } from "node:fs";
import type { ConnectionOptions } from "node:tls";
import { Client, InvalidCredentialsError, SizeLimitExceededError } from "ldapts";
import type { Logger } from "pino";
import { fillFilter } from "../../protocol/directory.js";
import { DirectoryUnavailableError, TooManyLoginsError } from "../../protocol/errors.js";
import type { LdapConfig } from "./ldap-config.js";
import { BoundedQueue } from "./passwords.js";

/** Directory round trips in flight per node; more wait (up to MAX_WAITING), then 429. */
export const MAX_CONCURRENT = 8;
export const MAX_WAITING = 256;
/** What a 503 tells the client to wait, seconds. */
export const RETRY_AFTER_SECONDS = 5;

/** A user the directory vouched for. */
export interface DirectoryEntry {
  dn: string;
  /** DNs of the groups it belongs to. */
  groups: string[];
}

export class LdapDirectory {
  readonly #queue = new BoundedQueue(MAX_CONCURRENT, MAX_WAITING);
  readonly #tls: ConnectionOptions;
  /** Sign-ins that reached the directory (a metric, and how tests tell a cache hit from a round trip). */
  roundTrips = 0;

  constructor(
    readonly config: LdapConfig,
    private readonly log: Logger,
  ) {
    const ca = config.caFile === undefined ? undefined : readFileSync(config.caFile);
    this.#tls = { ...(ca === undefined ? {} : { ca }), minVersion: "TLSv1.2" };
  }

  /** The entry of `username` if `password` is theirs; undefined if not (see the header). */
  authenticate(username: string, password: string): Promise<DirectoryEntry | undefined> {
    if (password === "" || username === "") return Promise.resolve(undefined);
    const queued = this.#queue.run(() => this.#bounded(username, password));
    if (queued === undefined)
      return Promise.reject(
        new TooManyLoginsError("too many directory sign-ins in progress; try again shortly", {
          detail: { retryAfterSeconds: 1 },
        }),
      );
    return queued;
  }

  async #bounded(username: string, password: string): Promise<DirectoryEntry | undefined> {
    this.roundTrips++;
    const { connectTimeoutMs, timeoutMs } = this.config;
    const client = new Client({
      url: this.config.url,
      connectTimeout: connectTimeoutMs,
      timeout: timeoutMs,
      // ldapts speaks TLS from the first byte whenever tlsOptions are given: only for ldaps://.
      ...(this.config.url.startsWith("ldaps://") ? { tlsOptions: this.#tls } : {}),
      strictDN: false,
    });
    const limit = connectTimeoutMs + timeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${limit} ms`)), limit);
    });
    try {
      return await Promise.race([this.#signIn(client, username, password), deadline]);
    } catch (err) {
      if (err instanceof DirectoryUnavailableError) throw err;
      this.log.warn(
        { err: { message: (err as Error).message, name: (err as Error).name } },
        "directory unavailable",
      );
      throw new DirectoryUnavailableError(
        "the user directory is unavailable: sign-in cannot be checked now; tokens already issued keep working",
        { cause: err, detail: { retryAfterSeconds: RETRY_AFTER_SECONDS } },
      );
    } finally {
      clearTimeout(timer);
      // Never awaited: against a stopped server even the unbind would wait; ldapts destroys the socket after it.
      client.unbind().catch(() => {});
    }
  }

  async #signIn(client: Client, username: string, password: string): Promise<DirectoryEntry | undefined> {
    const c = this.config;
    if (c.startTLS) await client.startTLS(this.#tls);
    if (c.bindDN !== undefined && c.bindPasswordFile !== undefined) {
      const secret = readFileSync(c.bindPasswordFile, "utf8").split(/\r?\n/)[0] ?? "";
      await client.bind(c.bindDN, secret);
    }
    let found: Awaited<ReturnType<Client["search"]>>;
    try {
      found = await client.search(c.userBase, {
        scope: "sub",
        filter: fillFilter(c.userFilter, { username }),
        attributes: c.groupBase === undefined ? [c.groupAttribute] : ["1.1"],
        sizeLimit: 2,
      });
    } catch (err) {
      // More than one entry: the name is ambiguous, which signs nobody in.
      if (err instanceof SizeLimitExceededError) return this.#nobody(client, password);
      throw err;
    }
    if (found.searchEntries.length !== 1) return this.#nobody(client, password);
    const entry = found.searchEntries[0]!;
    let groups: string[];
    if (c.groupBase === undefined) {
      const raw = entry[c.groupAttribute] ?? entry[lowerKey(entry, c.groupAttribute)];
      groups = raw === undefined ? [] : (Array.isArray(raw) ? raw : [raw]).map(String);
    } else {
      const result = await client.search(c.groupBase, {
        scope: "sub",
        filter: fillFilter(c.groupFilter, { username, dn: entry.dn }),
        attributes: ["1.1"],
        sizeLimit: 1_000,
      });
      groups = result.searchEntries.map((g) => g.dn);
    }
    try {
      await client.bind(entry.dn, password);
    } catch (err) {
      if (err instanceof InvalidCredentialsError) return undefined;
      throw err;
    }
    return { dn: entry.dn, groups };
  }

  /**
   * No such user: still one failing bind (a DN that does not exist), so that
   * a wrong name takes about as long as a wrong password and the time of a
   * refusal does not tell whether a name is in the directory.
   */
  async #nobody(client: Client, password: string): Promise<undefined> {
    await client.bind(`cn=meridian-no-such-user,${this.config.userBase}`, password).catch(() => {});
    return undefined;
  }
}

/** The key of `entry` naming `attribute` in another case (directories answer in the schema's case). */
function lowerKey(entry: Record<string, unknown>, attribute: string): string {
  const want = attribute.toLowerCase();
  return Object.keys(entry).find((k) => k.toLowerCase() === want) ?? attribute;
}
