/**
 * The OIDC users projection (issue 18 item 2): who signed in through the
 * OIDC provider, with the groups and roles of their latest sign-in, and
 * their CLI secret's hash, as `oidc.user.set` and `oidc.secret.set`
 * (protocol/oidc.ts) leave them. Both are last-writer-wins registers, apart,
 * so a sign-in never undoes a rotation made elsewhere meanwhile.
 *
 * Keys (values are JSON):
 *   ou!<user>   the latest sign-in   {value: OidcUserRecord, w}
 *   os!<user>   the CLI secret       {value: {secretHash, setAt} | null, w}
 *
 * An OIDC user is not a local user (`u!`): node/auth/oidc-subject.ts makes
 * its subject from these, and a name that is also a local user is the local
 * user's (node/http/oidc-routes.ts refuses such a sign-in).
 */
import type { Role } from "../../../protocol/access.js";
import type { Write } from "../../../protocol/registers.js";
import { Batch, getJson, type Handlers, type Projection, putRegister, type ViewDb } from "./store.js";

export interface OidcUserRecord {
  issuer: string;
  subject: string;
  groups: string[];
  systemAdmin: boolean;
  operator: boolean;
  roles: Record<string, Role>;
  /** The live sign-in's id; null once signed out. */
  session: string | null;
  /** When this sign-in (or sign-out) was recorded (the event's `at`). */
  at: string;
}

export interface OidcSecretRecord {
  secretHash: string;
  setAt: string;
}

/** Reads of the OIDC users (committed state). */
export interface OidcUserReads {
  user(name: string): Promise<OidcUserRecord | undefined>;
  /** The user's CLI secret; undefined: none, or revoked. */
  secret(name: string): Promise<OidcSecretRecord | undefined>;
  /** Every OIDC user that ever signed in, by name, with whether they hold a CLI secret. */
  users(): Promise<Array<{ name: string; hasSecret: boolean } & OidcUserRecord>>;
}

export class OidcUserProjection implements Projection, OidcUserReads {
  readonly #db: ViewDb;

  constructor(db: ViewDb) {
    this.#db = db;
  }

  readonly handlers: Handlers = {
    "oidc.user.set": (batch, e, w) =>
      putRegister(batch, `ou!${e.name}`, w, () => ({
        issuer: e.issuer,
        subject: e.sub,
        groups: e.groups,
        systemAdmin: e.systemAdmin,
        operator: e.operator,
        roles: e.roles,
        session: e.session,
        at: e.at,
      })),
    "oidc.secret.set": (batch, e, w) =>
      putRegister(batch, `os!${e.name}`, w, () =>
        e.hash === null ? null : { secretHash: e.hash, setAt: e.at },
      ),
  };

  async user(name: string): Promise<OidcUserRecord | undefined> {
    return oidcUserIn(this.#db, name);
  }

  async secret(name: string): Promise<OidcSecretRecord | undefined> {
    return (await getJson<{ value: OidcSecretRecord | null }>(this.#db, `os!${name}`))?.value ?? undefined;
  }

  async users(): Promise<Array<{ name: string; hasSecret: boolean } & OidcUserRecord>> {
    const batch = new Batch(this.#db);
    const secrets = new Set<string>();
    for (const [name, raw] of await batch.entriesUnder("os!"))
      if ((JSON.parse(raw) as { value: unknown }).value !== null) secrets.add(name);
    const out: Array<{ name: string; hasSecret: boolean } & OidcUserRecord> = [];
    for (const [name, raw] of await batch.entriesUnder("ou!")) {
      const { value } = JSON.parse(raw) as { value: OidcUserRecord };
      out.push({ name, hasSecret: secrets.has(name), ...value });
    }
    return out;
  }
}

/** An OIDC user's record as `source` (the database, or a batch with its pending writes) holds it. */
export async function oidcUserIn(
  source: { get(key: string): Promise<string | undefined> },
  name: string,
): Promise<OidcUserRecord | undefined> {
  return (await getJson<{ value: OidcUserRecord; w: Write }>(source, `ou!${name}`))?.value;
}
