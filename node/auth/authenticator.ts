/**
 * Who is asking, and may they (issue 6): the node's one gate between a
 * request's `Authorization` header and protocol/access.ts's decision.
 *
 * Credentials, as Docker clients send them:
 * - none: anonymous (pulls from public projects only);
 * - `Basic user:password` (users) or `Basic robot$name:secret` (robots),
 *   checked against the scrypt hash in the view (node/auth/passwords.ts);
 * - `Bearer <token>`: a token from `/auth/token` (mesh-client/tokens.ts), signed by the
 *   mesh's key, so one issued by any region is good here.
 *
 * Costs on the request path: a verified password is remembered for
 * `CREDENTIAL_CACHE_MS` (keyed by a SHA-256 of name and password, and only
 * while the stored hash is the one it was checked against: a password
 * change takes effect at once); a verified token is remembered until it
 * expires; subjects (a user's roles, a robot's grants) and projects are
 * re-read from the view at most every `LOOKUP_CACHE_MS`. So revoking a role
 * or deleting a user takes effect within a second, for bearer tokens too:
 * a token grants only what its scope names AND what its holder may still do.
 *
 * Failed logins (./login-limiter.ts): after `loginFailures` failures in a
 * minute for one user, or from one address, further attempts are refused
 * with 429 before any password is checked, so guessing is slowed to that
 * rate. The slot is reserved before the check (concurrent guesses count at
 * once), the check runs on the bounded KDF queue (./passwords.ts), and a
 * name that does not exist is checked against a dummy hash, so it takes as
 * long as a wrong password. A credential already verified (in the cache) is not limited, so a
 * flood of bad guesses against a user does not lock out that user's running
 * clients.
 *
 * Services: components holding the mesh's token key (the front door, the
 * control-plane peers) mint themselves `service` tokens; a service acts as a
 * system admin.
 *
 * Token scope (issue 10, finding 2): a bearer token is good for what it
 * names and no more. Only a token naming `registry:admin:*` is meant for the
 * admin API (`meantForAdmin`), and `issue` grants that scope only when asked
 * for and only to a password or a robot's secret (`via: "basic"`); the token
 * endpoint never takes a bearer token (`identify(…, {bearer: false})`). A
 * user's or robot's token carries a fingerprint of the credential it was
 * issued for (`cred`), compared with the current one on every use (the fast
 * lane included, from the cached subject: no extra await), so changing a
 * password or rotating a secret ends every token issued before, and an
 * administrator's `tokens.revoked` (issue 18) ends every token of its holder
 * issued at or before it (checked the same way, from the cached subject).
 *
 * This file is the Authenticator (identify, login, the fast lane
 * `identifyCached`/`decideCached`, issue); its parts by responsibility:
 * ./identity.ts (the Identity a request carries, ANONYMOUS, service
 * identities, `meantForAdmin`), ./credentials.ts (Basic decoding, the
 * Bearer challenge, cache keys, credential fingerprints), ./lookup-cache.ts
 * (the subject and project caches the fast lane peeks into) and ./scope.ts
 * (`judge`: the access decision cut to a token's scope). What the HTTP layer
 * imports is re-exported here.
 *
 * Directory users (issue 18, ./ldap-login.ts, with `directory`): a name that
 * is no local user signs in against the directory; its tokens carry its
 * roles (`claims.directory`) and need no lookup.
 */
import { LRUCache } from "lru-cache";
import type { Logger } from "pino";
import {
  ADMIN_SCOPE,
  type GrantedAccess,
  proxyAudience,
  TOKEN_ISSUER,
  type TokenClaims,
  type TokenKeys,
  TokenRejectedError,
} from "../../mesh-client/tokens.js";
import {
  type Action,
  allowedActions,
  type ProjectInfo,
  parseScope,
  projectOf,
} from "../../protocol/access.js";
import { TooManyLoginsError, UnauthorizedError, UnsupportedError } from "../../protocol/errors.js";
import { ROBOT_NAME, USER_NAME } from "../../protocol/events.js";
import { parseRepository } from "../../protocol/names.js";
import type { MetadataView } from "../data/view.js";
import { credentialFingerprint, credentialKey, decodeBasic, tokenKey } from "./credentials.js";
import { ANONYMOUS, type Identity, type LoginOutcome, serviceIdentity } from "./identity.js";
import { type DirectoryLogin, directoryIdentity } from "./ldap-login.js";
import type { LoginLimiter } from "./login-limiter.js";
import {
  type CacheEntry,
  cached,
  expired,
  MAX_CACHED,
  peek,
  revoked,
  type StoredSubject,
} from "./lookup-cache.js";
import { oidcSubject } from "./oidc-subject.js";
import { DEFAULT_COST, ROBOT_SECRET_COST, verifyPassword, verifyUnknown } from "./passwords.js";
import { type Judgement, judge } from "./scope.js";

// What the HTTP layer and the tests import from here, wherever it lives now.
export { bearerChallenge, credentialFingerprint, decodeBasic } from "./credentials.js";
export {
  ANONYMOUS,
  type Identity,
  type IdentityKind,
  type LoginOutcome,
  meantForAdmin,
} from "./identity.js";
export type { Judgement } from "./scope.js";

const CREDENTIAL_CACHE_MS = 5 * 60_000;

export interface AuthenticatorOptions {
  view: MetadataView;
  keys: TokenKeys;
  service: string;
  tokenTtlSeconds: number;
  limiter: LoginLimiter;
  logger: Logger;
  /** Directory sign-in (LDAP); absent: local users only. */
  directory?: DirectoryLogin;
}

export class Authenticator {
  readonly service: string;
  readonly #o: AuthenticatorOptions;
  readonly #verified = new LRUCache<string, { name: string; hash: string; until: number }>({
    max: MAX_CACHED,
  });
  /** Password checks in flight, by credentialKey (joined by identical concurrent logins). */
  readonly #checking = new Map<string, Promise<Identity>>();
  /**
   * Verified tokens by the last 43 characters of their signature (hashing a
   * short key is several times cheaper than hashing a whole token on every
   * request); the entry keeps the whole token, which must match exactly.
   */
  readonly #tokens = new LRUCache<string, { token: string; claims: TokenClaims }>({ max: MAX_CACHED });
  readonly #subjects = new LRUCache<string, CacheEntry<StoredSubject | undefined>>({ max: MAX_CACHED });
  /** Directory users' token revocations (ms), re-read like subjects: they have no local record. */
  readonly #revocations = new LRUCache<string, CacheEntry<number | undefined>>({ max: MAX_CACHED });
  readonly #projects = new LRUCache<string, CacheEntry<ProjectInfo | undefined>>({ max: MAX_CACHED });

  constructor(options: AuthenticatorOptions) {
    this.#o = options;
    this.service = options.service;
  }

  /**
   * The identity behind an Authorization header. No header: anonymous.
   * Credentials that do not check out: UnauthorizedError (TooManyLoginsError
   * while the limiter holds them back); `onLogin` hears of every password
   * checked (for the audit log).
   */
  async identify(
    authorization: string | undefined,
    address: string,
    onLogin?: (outcome: LoginOutcome) => void,
    /** `bearer: false`: refuse bearer tokens (the token endpoint mints tokens only for credentials). */
    options: { bearer?: boolean } = {},
  ): Promise<Identity> {
    if (authorization === undefined || authorization === "") return ANONYMOUS;
    const space = authorization.indexOf(" ");
    const scheme = (space < 0 ? authorization : authorization.slice(0, space)).toLowerCase();
    const value = space < 0 ? "" : authorization.slice(space + 1).trim();
    if (scheme === "bearer") {
      if (options.bearer === false)
        throw new UnauthorizedError("a bearer token cannot be exchanged for a token: log in with a password");
      return this.#bearer(value);
    }
    if (scheme === "basic") {
      const { name, password } = decodeBasic(value);
      return this.login(name, password, address, onLogin);
    }
    throw new UnauthorizedError(`unsupported authorization scheme "${scheme}"`);
  }

  /** Check a name and password (a user's, or a robot's secret). */
  async login(
    name: string,
    password: string,
    address: string,
    onLogin?: (outcome: LoginOutcome) => void,
  ): Promise<Identity> {
    const key = credentialKey(name, password);
    const stored = await this.#subject(name);
    if (stored?.subject.kind === "robot" && Date.now() >= stored.subject.expiresAt) {
      onLogin?.({ name, failure: "robot expired" });
      throw new UnauthorizedError(`robot account ${name} has expired`);
    }
    if (stored !== undefined && this.#verifiedNow(key, stored))
      return this.#identityOf(name, stored, "basic");
    const directory = this.#o.directory;
    if (stored === undefined && directory?.accepts(name) === true)
      return directory.signIn(name, password, address, onLogin);
    // The same credentials already being checked (a client's parallel requests before its first
    // answer): share that check, so they take one limiter slot and one derivation, not one each.
    const inFlight = this.#checking.get(key);
    if (inFlight !== undefined) return inFlight;
    const check = this.#check(name, password, address, key, stored, onLogin);
    this.#checking.set(key, check);
    const done = () => this.#checking.delete(key);
    check.then(done, done);
    return check;
  }

  async #check(
    name: string,
    password: string,
    address: string,
    key: string,
    stored: StoredSubject | undefined,
    onLogin?: (outcome: LoginOutcome) => void,
  ): Promise<Identity> {
    // The slot is taken before the (slow) check, so concurrent guesses cannot all get in.
    const attempt = this.#o.limiter.attempt(name, address);
    if (typeof attempt === "number") {
      onLogin?.({ name, failure: "too many failed logins", limited: true });
      throw new TooManyLoginsError(`too many failed logins; try again in ${attempt} s`, {
        detail: { retryAfterSeconds: attempt },
      });
    }
    // An unknown name costs a derivation too, so its answer takes as long as a wrong password's.
    let ok: boolean;
    try {
      ok =
        stored === undefined
          ? await verifyUnknown(password, ROBOT_NAME.test(name) ? ROBOT_SECRET_COST : DEFAULT_COST)
          : await verifyPassword(password, stored.hash);
    } catch (err) {
      attempt.cancel();
      throw err;
    }
    if (!ok || stored === undefined) {
      const failure = stored === undefined ? "unknown user" : "wrong password";
      onLogin?.({ name, failure });
      throw new UnauthorizedError("authentication required: user name or password is wrong");
    }
    attempt.succeeded();
    this.#verified.set(key, { name, hash: stored.hash, until: Date.now() + CREDENTIAL_CACHE_MS });
    const identity = this.#identityOf(name, stored, "basic");
    onLogin?.({ name, identity });
    return identity;
  }

  /**
   * The request path's fast lane: the identity behind `authorization` when
   * everything needed is cached (a verified token or password, a fresh
   * subject), without awaiting anything; undefined sends the caller to
   * `identify`. Never throws and never decides a failure: only `identify` refuses.
   */
  identifyCached(authorization: string | undefined): Identity | undefined {
    if (authorization === undefined || authorization === "") return ANONYMOUS;
    if (authorization.startsWith("Bearer ")) {
      const token = authorization.slice(7);
      const hit = this.#tokens.get(tokenKey(token));
      if (hit === undefined || hit.token !== token) return undefined;
      const claims = hit.claims;
      if (claims.expiresAt <= Date.now()) return undefined;
      if (claims.kind === "anonymous") return { ...ANONYMOUS, via: "bearer", claims };
      if (claims.kind === "service") return serviceIdentity(claims);
      if (claims.directory !== undefined) {
        const revocation = peek(this.#revocations, claims.subject);
        if (
          revocation === undefined ||
          (revocation.value !== undefined && claims.issuedAt <= revocation.value)
        )
          return undefined;
        return { ...directoryIdentity(claims.subject, claims.directory, "bearer"), claims };
      }
      const stored = peek(this.#subjects, claims.subject)?.value;
      if (
        stored === undefined ||
        stored.subject.kind !== claims.kind ||
        expired(stored) ||
        claims.cred !== stored.cred ||
        revoked(stored, claims.issuedAt)
      )
        return undefined;
      return { ...this.#identityOf(claims.subject, stored, "bearer"), claims };
    }
    if (authorization.startsWith("Basic ")) {
      let name: string;
      let password: string;
      try {
        ({ name, password } = decodeBasic(authorization.slice(6).trim()));
      } catch {
        return undefined;
      }
      const looked = peek(this.#subjects, name);
      if (looked !== undefined && looked.value === undefined)
        return this.#o.directory?.cached(name, password);
      const stored = looked?.value;
      if (
        stored === undefined ||
        expired(stored) ||
        !this.#verifiedNow(credentialKey(name, password), stored)
      )
        return undefined;
      return this.#identityOf(name, stored, "basic");
    }
    return undefined;
  }

  /** `decide` from cached project settings, without awaiting; undefined when they are not cached. */
  decideCached(identity: Identity, action: Action, repo: string): Judgement | undefined {
    const project = peek(this.#projects, projectOf(repo));
    return project === undefined ? undefined : judge(identity, action, repo, project.value);
  }

  /**
   * Drop what is cached of `name` (a subject) or of a project: this node
   * changed it, so the change applies here at once (changes arriving from
   * other regions apply within LOOKUP_CACHE_MS).
   */
  forget(name: string): void {
    this.#subjects.delete(name);
    this.#projects.delete(name);
    for (const [key, v] of [...this.#verified.entries()]) if (v.name === name) this.#verified.delete(key);
    this.#o.directory?.forget(name);
  }

  /** May `identity` do `action` to `repo`? (A bearer token must name it in its scope, too.) */
  async decide(identity: Identity, action: Action, repo: string): Promise<Judgement> {
    return judge(identity, action, repo, await this.project(projectOf(repo)));
  }

  /** A project's settings (cached for a second); undefined for a project never set (private). */
  project(name: string): Promise<ProjectInfo | undefined> {
    return cached(this.#projects, name, () => this.#o.view.identity.project(name));
  }

  /**
   * Answer a token request: for each `repository:NAME:ACTIONS` scope, the
   * actions asked for that the identity may do (possibly none: the client
   * then gets a token that grants nothing, and a 401/403 on use, as Docker's
   * token servers answer). A scope of another resource type is ignored; a
   * malformed one is refused.
   */
  async issue(
    identity: Identity,
    scopes: readonly string[],
    /**
     * `only`: the token is good for reading this one path only (a redirect's `_token`).
     * `session`: an OIDC sign-in's token (./oidc-session.ts): for the admin API, living `ttlSeconds`.
     */
    options: { only?: string; session?: { ttlSeconds: number } } = {},
  ): Promise<{ token: string; expiresIn: number; issuedAt: string; access: GrantedAccess[] }> {
    const access: GrantedAccess[] = [];
    let admin = false;
    for (const raw of scopes) {
      for (const one of raw.split(" ").filter((s) => s !== "")) {
        if (one === ADMIN_SCOPE) {
          // Only for a password or a secret: a token never buys a token for the admin API.
          admin = identity.via === "basic" && (identity.kind === "user" || identity.kind === "robot");
          continue;
        }
        const scope = parseScope(one);
        if (scope === undefined) {
          if (/^[a-z]+:.+:.*$/.test(one) && !one.startsWith("repository:")) continue;
          throw new UnsupportedError(`scope invalid: ${one}`);
        }
        const repo = parseRepository(scope.repo);
        const project = await this.project(projectOf(repo));
        const may = allowedActions(identity.subject, repo, project, Date.now());
        const actions = scope.actions.filter((a) => may.includes(a));
        const existing = access.find((a) => a.name === repo);
        if (existing === undefined) access.push({ type: "repository", name: repo, actions });
        else existing.actions = [...new Set([...existing.actions, ...actions])];
      }
    }
    const issued = await this.#o.keys.issue({
      issuer: TOKEN_ISSUER,
      service: this.service,
      subject: identity.name,
      kind: identity.kind,
      access,
      ttlSeconds: options.session?.ttlSeconds ?? this.#o.tokenTtlSeconds,
      admin: (admin || options.session !== undefined) && options.only === undefined,
      ...(identity.cred === undefined ? {} : { cred: identity.cred }),
      ...(identity.directory === undefined ? {} : { directory: identity.directory }),
      ...(options.only === undefined ? {} : { only: options.only }),
    });
    return { ...issued, access };
  }

  /**
   * When a proxy's proof (node/http/forwarded.ts) expires, or undefined when
   * it is not one: a `service` token of the mesh's key for the audience
   * `proxyAudience(service)`, which no registry request accepts as a credential.
   */
  async proxyProof(token: string): Promise<number | undefined> {
    try {
      const claims = await this.#o.keys.verify(token, {
        issuer: TOKEN_ISSUER,
        service: proxyAudience(this.service),
      });
      return claims.kind === "service" ? claims.expiresAt : undefined;
    } catch {
      return undefined;
    }
  }

  async #bearer(token: string): Promise<Identity> {
    const hit = this.#tokens.get(tokenKey(token));
    let claims = hit?.token === token ? hit.claims : undefined;
    if (claims === undefined || claims.expiresAt <= Date.now()) {
      try {
        claims = await this.#o.keys.verify(token, { issuer: TOKEN_ISSUER, service: this.service });
      } catch (err) {
        if (err instanceof TokenRejectedError) throw new UnauthorizedError(err.message);
        throw err;
      }
      this.#tokens.set(tokenKey(token), { token, claims });
    }
    if (claims.kind === "anonymous") return { ...ANONYMOUS, via: "bearer", claims };
    if (claims.kind === "service") return serviceIdentity(claims);
    if (claims.directory !== undefined) {
      // No local record to re-read: only an administrator's revocation ends a directory user's token early.
      const before = await cached(this.#revocations, claims.subject, () =>
        this.#o.view.identity.tokensRevokedBefore(claims.subject),
      );
      if (before !== undefined && claims.issuedAt <= before)
        throw new UnauthorizedError("token was revoked by an administrator: log in again");
      return { ...directoryIdentity(claims.subject, claims.directory, "bearer"), claims };
    }
    // The holder must still exist (a deleted user's or robot's tokens die with it).
    const stored = await this.#subject(claims.subject);
    if (stored === undefined || stored.subject.kind !== claims.kind)
      throw new UnauthorizedError(`token holder ${claims.subject} no longer exists`);
    if (claims.cred !== stored.cred)
      throw new UnauthorizedError("token was issued before a password or secret change: log in again");
    if (revoked(stored, claims.issuedAt))
      throw new UnauthorizedError("token was revoked by an administrator: log in again");
    if (stored.subject.kind === "robot" && Date.now() >= stored.subject.expiresAt)
      throw new UnauthorizedError(`robot account ${claims.subject} has expired`);
    return { ...this.#identityOf(claims.subject, stored, "bearer"), claims };
  }

  /** Whether this password was verified recently against the hash `stored` holds now. */
  #verifiedNow(key: string, stored: StoredSubject): boolean {
    const hit = this.#verified.get(key);
    return hit !== undefined && hit.until > Date.now() && hit.hash === stored.hash;
  }

  #identityOf(name: string, stored: StoredSubject, via: Identity["via"]): Identity {
    return {
      name,
      kind: stored.subject.kind as "user" | "robot",
      subject: stored.subject,
      via,
      cred: stored.cred,
    };
  }

  #subject(name: string): Promise<StoredSubject | undefined> {
    return cached(this.#subjects, name, async () => {
      const view = this.#o.view;
      if (ROBOT_NAME.test(name)) {
        const [robot, revokedBefore] = await Promise.all([
          view.identity.robot(name),
          view.identity.tokensRevokedBefore(name),
        ]);
        if (robot === undefined) return undefined;
        return {
          ...(revokedBefore === undefined ? {} : { revokedBefore }),
          hash: robot.secretHash,
          cred: credentialFingerprint(robot.secretHash),
          subject: { kind: "robot", name, expiresAt: Date.parse(robot.expiresAt), grants: robot.grants },
        };
      }
      if (!USER_NAME.test(name)) return undefined;
      const [user, revokedBefore] = await Promise.all([
        view.identity.user(name),
        view.identity.tokensRevokedBefore(name),
      ]);
      if (user === undefined) return oidcSubject(view, name, revokedBefore);
      return {
        ...(revokedBefore === undefined ? {} : { revokedBefore }),
        hash: user.passwordHash,
        cred: credentialFingerprint(user.passwordHash),
        subject: {
          kind: "user",
          name,
          systemAdmin: user.systemAdmin,
          roles: await view.identity.rolesOf(name),
          ...(user.operator === true ? { operator: true } : {}),
        },
      };
    });
  }
}
