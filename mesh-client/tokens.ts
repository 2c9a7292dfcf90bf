/**
 * Registry bearer tokens (issue 6, "Docker token authentication"): the
 * short-lived JWTs a token endpoint hands to `docker login`/skopeo/podman
 * after checking their credentials, and every node checks on every request.
 * Signed with `jose` (ES256).
 *
 * One signing key for the whole mesh (a PKCS#8 file every region's nodes
 * read), so a token issued by any region is good in all of them: a client
 * that logged in through a region that then failed keeps working against
 * the others. Verification also accepts keys listed as retired, so the key
 * can be rotated without logging everyone out: publish the new key, keep the
 * old one as retired for one token lifetime, then drop it. Each token names
 * its key (`kid`: the RFC 7638 thumbprint of the public key).
 *
 * Claims follow Distribution's token format, so any Docker client
 * understands the answer: `iss`, `sub`, `aud` (the service), `exp`, `nbf`,
 * `iat`, `jti`, and `access`: [{type: "repository", name, actions}].
 * Meridian adds `kind` (user, robot, anonymous, or service: a Meridian component).
 *
 * Scope (issue 10, finding 2): a token is good only for what it names. The
 * admin API takes a bearer token only when its access holds
 * `{type: "registry", name: "admin", actions: ["*"]}` (the Docker-style
 * scope `registry:admin:*`, issued only when asked for, and only for a
 * password or a robot's secret, never in exchange for another token).
 * `cred`: a fingerprint of the holder's password or secret hash when the
 * token was issued; a token whose `cred` is not the holder's current one
 * (the password changed, the secret was rotated) is refused, in every region
 * once the change has reached it. `only`: a token good for reading that one
 * path only (a fetch-on-miss redirect's `_token`: one blob or manifest).
 *
 * The same key also signs identity and policy events (`signEvent`,
 * protocol/event-authority.ts), so the view can tell them from forgeries.
 *
 * Here in mesh-client/ (not node/auth/) because the nodes that verify these
 * tokens and the components that mint their own (control-plane's front door
 * and peers, mesh-client/service-token.ts) must agree on the format without
 * importing each other; node/auth/authenticator.ts applies them to requests.
 */
import { randomUUID } from "node:crypto";
import {
  CompactSign,
  type CryptoKey,
  calculateJwkThumbprint,
  compactVerify,
  exportJWK,
  exportPKCS8,
  exportSPKI,
  generateKeyPair,
  importPKCS8,
  importSPKI,
  jwtVerify,
  SignJWT,
} from "jose";
import { ACTIONS, type Action } from "../protocol/access.js";
import { proofPayload } from "../protocol/event-authority.js";
import type { RegistryEvent } from "../protocol/events.js";

const ALG = "ES256";

/** The issuer named in every token of a mesh. */
export const TOKEN_ISSUER = "meridian";
/** The header carrying the front door's proof that it is a trusted proxy (node/http/forwarded.ts). */
export const PROXY_PROOF_HEADER = "meridian-proxy-proof";

/** The audience of the front door's proof tokens: not the registry's, so they are not credentials. */
export function proxyAudience(service: string): string {
  return `${service}#proxy`;
}

export interface GrantedAccess {
  type: "repository";
  name: string;
  actions: Action[];
}

/** The access entry of a token meant for the admin API (scope `registry:admin:*`). */
export const ADMIN_ACCESS = Object.freeze({ type: "registry", name: "admin", actions: ["*"] }) as {
  type: "registry";
  name: "admin";
  actions: ["*"];
};
export const ADMIN_SCOPE = "registry:admin:*";

export interface TokenClaims {
  subject: string;
  /** `service`: a Meridian component holding the mesh's key (the front door, a peer); acts as a system admin. */
  kind: "user" | "robot" | "anonymous" | "service";
  access: GrantedAccess[];
  expiresAt: number;
  /** When it was issued (ms since the epoch, whole seconds: the JWT's `iat`); revocation compares it. */
  issuedAt: number;
  /** The token names `registry:admin:*`: good for the admin API. */
  admin: boolean;
  /** Fingerprint of the holder's credential when issued (users and robots). */
  cred?: string;
  /** Good only for reading this request path (`/v2/<repo>/blobs/<digest>`, `/v2/<repo>/manifests/<ref>`). */
  only?: string;
}

/** The token could not be verified: bad signature, wrong issuer or service, expired, malformed. */
export class TokenRejectedError extends Error {
  override name = "TokenRejectedError";
}

interface VerifyKey {
  kid: string;
  key: CryptoKey;
}

export class TokenKeys {
  private constructor(
    readonly kid: string,
    private readonly signing: CryptoKey,
    private readonly verifying: readonly VerifyKey[],
  ) {}

  /** A fresh key pair (for `meridian up`, which writes it to the data directory, and for tests). */
  static async generate(): Promise<{ keys: TokenKeys; privatePem: string; publicPem: string }> {
    const { privateKey, publicKey } = await generateKeyPair(ALG, { extractable: true });
    const privatePem = await exportPKCS8(privateKey);
    const publicPem = await exportSPKI(publicKey);
    return { keys: await TokenKeys.fromPem(privatePem, publicPem), privatePem, publicPem };
  }

  /**
   * Keys from PEM text: the signing key (PKCS#8) with its public half
   * (SPKI), and public keys of retired signing keys still accepted.
   */
  static async fromPem(
    privatePem: string,
    publicPem: string,
    retiredPublicPems: string[] = [],
  ): Promise<TokenKeys> {
    const signing = await importPKCS8(privatePem, ALG);
    const verifying: VerifyKey[] = [];
    for (const pem of [publicPem, ...retiredPublicPems]) {
      const key = await importSPKI(pem, ALG, { extractable: true });
      verifying.push({ kid: await calculateJwkThumbprint(await exportJWK(key)), key });
    }
    return new TokenKeys(verifying[0]!.kid, signing, verifying);
  }

  /** Sign a token for `subject` granting `access`, valid `ttlSeconds` from `now`. */
  async issue(options: {
    issuer: string;
    service: string;
    subject: string;
    kind: TokenClaims["kind"];
    access: GrantedAccess[];
    ttlSeconds: number;
    now?: number;
    /** Add the admin API's access entry (ADMIN_ACCESS). */
    admin?: boolean;
    cred?: string;
    only?: string;
  }): Promise<{ token: string; expiresIn: number; issuedAt: string }> {
    const now = Math.floor((options.now ?? Date.now()) / 1000);
    const claims: Record<string, unknown> = {
      access: options.admin === true ? [...options.access, ADMIN_ACCESS] : options.access,
      kind: options.kind,
    };
    if (options.cred !== undefined) claims.cred = options.cred;
    if (options.only !== undefined) claims.only = options.only;
    const token = await new SignJWT(claims)
      .setProtectedHeader({ alg: ALG, kid: this.kid, typ: "JWT" })
      .setIssuer(options.issuer)
      .setSubject(options.subject)
      .setAudience(options.service)
      .setIssuedAt(now)
      .setNotBefore(now)
      .setExpirationTime(now + options.ttlSeconds)
      .setJti(randomUUID())
      .sign(this.signing);
    return { token, expiresIn: options.ttlSeconds, issuedAt: new Date(now * 1000).toISOString() };
  }

  /** The claims of a token this mesh issued for `service`; TokenRejectedError otherwise. */
  async verify(
    token: string,
    options: { issuer: string; service: string; now?: number },
  ): Promise<TokenClaims> {
    try {
      const { payload } = await jwtVerify(
        token,
        async (header) => {
          const found = this.verifying.find((k) => k.kid === header.kid);
          if (found === undefined) throw new TokenRejectedError("token signed by an unknown key");
          return found.key;
        },
        {
          issuer: options.issuer,
          audience: options.service,
          algorithms: [ALG],
          currentDate: options.now === undefined ? undefined : new Date(options.now),
          requiredClaims: ["sub", "exp", "nbf", "iat"],
          clockTolerance: 5,
        },
      );
      const kind = payload.kind;
      if (kind !== "user" && kind !== "robot" && kind !== "anonymous" && kind !== "service")
        throw new TokenRejectedError("bad kind");
      if (!Array.isArray(payload.access)) throw new TokenRejectedError("access: not a list");
      const admin = payload.access.some(
        (a) => (a as GrantedAccess | typeof ADMIN_ACCESS)?.type === "registry" && a.name === "admin",
      );
      const claims: TokenClaims = {
        subject: payload.sub!,
        kind,
        access: parseAccess(payload.access.filter((a) => (a as { type?: unknown })?.type !== "registry")),
        expiresAt: payload.exp! * 1000,
        issuedAt: payload.iat! * 1000,
        admin,
      };
      if (typeof payload.cred === "string") claims.cred = payload.cred;
      if (typeof payload.only === "string") claims.only = payload.only;
      return claims;
    } catch (err) {
      if (err instanceof TokenRejectedError) throw err;
      throw new TokenRejectedError(`token rejected: ${(err as Error).message}`, { cause: err });
    }
  }

  /** A detached JWS over the event's proof payload (protocol/event-authority.ts), by the signing key. */
  async signEvent(event: RegistryEvent): Promise<string> {
    const jws = await new CompactSign(proofPayload(event))
      .setProtectedHeader({ alg: ALG, kid: this.kid, typ: "meridian-event" })
      .sign(this.signing);
    const [header, , signature] = jws.split(".");
    return `${header}..${signature}`;
  }

  /** Whether `event.proof` is a valid proof of it by the signing key or a retired one. */
  async verifyEvent(event: RegistryEvent): Promise<boolean> {
    const parts = event.proof?.split(".");
    if (parts === undefined || parts.length !== 3 || parts[1] !== "") return false;
    const payload = Buffer.from(proofPayload(event)).toString("base64url");
    try {
      await compactVerify(
        `${parts[0]}.${payload}.${parts[2]}`,
        (header) => {
          const found = this.verifying.find((k) => k.kid === header.kid);
          if (found === undefined) throw new TokenRejectedError("event signed by an unknown key");
          return found.key;
        },
        { algorithms: [ALG] },
      );
      return true;
    } catch {
      return false;
    }
  }
}

function parseAccess(value: unknown): GrantedAccess[] {
  if (!Array.isArray(value)) throw new TokenRejectedError("access: not a list");
  return value.map((entry) => {
    const e = entry as Partial<GrantedAccess>;
    if (e?.type !== "repository" || typeof e.name !== "string" || !Array.isArray(e.actions))
      throw new TokenRejectedError("access: malformed entry");
    return {
      type: "repository",
      name: e.name,
      actions: e.actions.filter((a): a is Action => ACTIONS.includes(a as Action)),
    };
  });
}

/** Whether verified claims grant `action` on `repo`. */
export function grants(claims: TokenClaims, repo: string, action: Action): boolean {
  return claims.access.some((a) => a.type === "repository" && a.name === repo && a.actions.includes(action));
}
