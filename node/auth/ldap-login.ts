/**
 * Directory users signing in (issue 18): the step between the
 * authenticator (./authenticator.ts) and the directory (./ldap-directory.ts).
 *
 * Who is a directory user: a name that is not a local user (local users
 * come first: a local user and a directory user of the same name are the
 * local one, whose local password alone counts, so the break-glass `admin`
 * keeps working with the directory down and a directory entry cannot take
 * over a local account), not a robot (`robot$…`), and 1–256 characters
 * without control characters or upper-case letters. Lower case only because
 * directories compare names without case while local names are lower-case:
 * `LEE` must not reach the directory's lee past a local lee, and a directory
 * user is then always named the same in tokens and the audit log. Nothing of a directory user is stored: no
 * record in the view, no password hash; what the groups grant travels in
 * that user's tokens (mesh-client/tokens.ts `dir`), so every node and
 * region honours them, the directory down included, for the token's life.
 *
 * The cache of successful sign-ins (`ldap.cacheSeconds`, 60 s by default,
 * at most MAX_CACHED entries, least recently used out first): keyed by the
 * name and an HMAC-SHA-256 of name and password under a key drawn at random
 * when the process starts, so the cache holds no password and nothing that
 * can be checked against one outside this process. A hit signs in without
 * a round trip to the directory (pull storms with Basic credentials, a
 * client's repeated token requests); a wrong password or an unknown name is
 * never cached; a group change, a disabled account or a new password in the
 * directory takes effect once the entry expires. Identical sign-ins in
 * flight share one round trip.
 *
 * Failed logins count in the node's login limiter (./login-limiter.ts) as a
 * local user's do: a slot is reserved before the directory is asked, given back
 * when the directory could not answer (an outage is not a wrong password).
 *
 * Metric: `meridian_ldap_signins_total{outcome}`, outcome `cached` (no round
 * trip), `ok`, `refused` (unknown name or wrong password), `unavailable`
 * (503) and `limited` (429 before the directory was asked).
 */
import { createHmac, randomBytes } from "node:crypto";
import { LRUCache } from "lru-cache";
import { Counter, type Registry as MetricsRegistry } from "prom-client";
import { type DirectoryGrant, grantOf } from "../../protocol/directory.js";
import { DirectoryUnavailableError, TooManyLoginsError, UnauthorizedError } from "../../protocol/errors.js";
import { ROBOT_NAME } from "../../protocol/events.js";
import type { Identity, LoginOutcome } from "./identity.js";
import type { LdapDirectory } from "./ldap-directory.js";
import type { LoginLimiter } from "./login-limiter.js";

export const MAX_CACHED = 10_000;
const DIRECTORY_NAME = /^[^\p{Cc}]{1,256}$/u;
const OUTCOMES = ["cached", "ok", "refused", "unavailable", "limited"] as const;
type Outcome = (typeof OUTCOMES)[number];

export class DirectoryLogin {
  readonly #key = randomBytes(32);
  readonly #cache = new LRUCache<string, { grant: DirectoryGrant; until: number }>({ max: MAX_CACHED });
  readonly #signing = new Map<string, Promise<Identity>>();
  /** Sign-ins by outcome (the metric). */
  readonly counts: Record<Outcome, number> = { cached: 0, ok: 0, refused: 0, unavailable: 0, limited: 0 };

  constructor(
    readonly directory: LdapDirectory,
    private readonly limiter: LoginLimiter,
    private readonly now: () => number = Date.now,
  ) {}

  /** May `name` be asked of the directory (it is not a local user: the caller knows that). */
  accepts(name: string): boolean {
    return !ROBOT_NAME.test(name) && DIRECTORY_NAME.test(name) && name === name.toLowerCase();
  }

  /** The identity of a cached sign-in, without awaiting; undefined when not cached (or expired). */
  cached(name: string, password: string): Identity | undefined {
    if (this.directory.config.cacheSeconds === 0 || !this.accepts(name)) return undefined;
    const hit = this.#cache.get(this.#cacheKey(name, password));
    return hit !== undefined && hit.until > this.now()
      ? directoryIdentity(name, hit.grant, "basic")
      : undefined;
  }

  /** Check `name`/`password` with the directory (or the cache); 401, 429 or 503 (DirectoryUnavailableError). */
  signIn(
    name: string,
    password: string,
    address: string,
    onLogin?: (outcome: LoginOutcome) => void,
  ): Promise<Identity> {
    const hit = this.cached(name, password);
    if (hit !== undefined) {
      this.counts.cached++;
      return Promise.resolve(hit);
    }
    const key = this.#cacheKey(name, password);
    const inFlight = this.#signing.get(key);
    if (inFlight !== undefined) return inFlight;
    const signing = this.#ask(name, password, address, key, onLogin);
    this.#signing.set(key, signing);
    const done = () => this.#signing.delete(key);
    signing.then(done, done);
    return signing;
  }

  /** Drop `name`'s cached sign-ins (a local user of that name was made here). */
  forget(name: string): void {
    const prefix = `${name}\0`;
    for (const key of [...this.#cache.keys()]) if (key.startsWith(prefix)) this.#cache.delete(key);
  }

  async #ask(
    name: string,
    password: string,
    address: string,
    key: string,
    onLogin?: (outcome: LoginOutcome) => void,
  ): Promise<Identity> {
    const attempt = this.limiter.attempt(name, address);
    if (typeof attempt === "number") {
      this.counts.limited++;
      onLogin?.({ name, failure: "too many failed logins", limited: true });
      throw new TooManyLoginsError(`too many failed logins; try again in ${attempt} s`, {
        detail: { retryAfterSeconds: attempt },
      });
    }
    let entry: Awaited<ReturnType<LdapDirectory["authenticate"]>>;
    try {
      entry = await this.directory.authenticate(name, password);
    } catch (err) {
      attempt.cancel();
      if (err instanceof DirectoryUnavailableError) this.counts.unavailable++;
      throw err;
    }
    if (entry === undefined) {
      this.counts.refused++;
      onLogin?.({ name, failure: "directory: unknown user or wrong password" });
      throw new UnauthorizedError("authentication required: user name or password is wrong");
    }
    attempt.succeeded();
    this.counts.ok++;
    const grant = grantOf(entry.groups, this.directory.config.rules);
    const ttl = this.directory.config.cacheSeconds * 1000;
    if (ttl > 0) this.#cache.set(key, { grant, until: this.now() + ttl });
    const identity = directoryIdentity(name, grant, "basic");
    onLogin?.({ name, identity });
    return identity;
  }

  #cacheKey(name: string, password: string): string {
    const mac = createHmac("sha256", this.#key)
      .update(name)
      .update("\0")
      .update(password)
      .digest("base64url");
    return `${name}\0${mac}`;
  }
}

/** The identity of directory user `name` holding `grant` (from a sign-in, or from a token's claims). */
export function directoryIdentity(name: string, grant: DirectoryGrant, via: Identity["via"]): Identity {
  return {
    name,
    kind: "user",
    subject: {
      kind: "user",
      name,
      systemAdmin: grant.systemAdmin,
      roles: grant.roles,
      ...(grant.operator ? { operator: true } : {}),
    },
    via,
    directory: grant,
  };
}

/** `meridian_ldap_signins_total{outcome}` (see the header). */
export function registerLdapMetrics(registry: MetricsRegistry, login: DirectoryLogin): void {
  new Counter({
    name: "meridian_ldap_signins_total",
    help: "Directory (LDAP) sign-ins by outcome: cached (no round trip), ok, refused, unavailable (503), limited (429)",
    labelNames: ["outcome"],
    registers: [registry],
    collect() {
      this.reset();
      for (const outcome of OUTCOMES) this.inc({ outcome }, login.counts[outcome]);
    },
  });
}
