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
 */
import { randomUUID } from "node:crypto";
import {
  type CryptoKey,
  calculateJwkThumbprint,
  exportJWK,
  exportPKCS8,
  exportSPKI,
  generateKeyPair,
  importPKCS8,
  importSPKI,
  jwtVerify,
  SignJWT,
} from "jose";
import { ACTIONS, type Action } from "../../protocol/access.js";

const ALG = "ES256";

export interface GrantedAccess {
  type: "repository";
  name: string;
  actions: Action[];
}

export interface TokenClaims {
  subject: string;
  /** `service`: a Meridian component holding the mesh's key (the front door, a peer); acts as a system admin. */
  kind: "user" | "robot" | "anonymous" | "service";
  access: GrantedAccess[];
  expiresAt: number;
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
  }): Promise<{ token: string; expiresIn: number; issuedAt: string }> {
    const now = Math.floor((options.now ?? Date.now()) / 1000);
    const token = await new SignJWT({ access: options.access, kind: options.kind })
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
      return {
        subject: payload.sub!,
        kind,
        access: parseAccess(payload.access),
        expiresAt: payload.exp! * 1000,
      };
    } catch (err) {
      if (err instanceof TokenRejectedError) throw err;
      throw new TokenRejectedError(`token rejected: ${(err as Error).message}`, { cause: err });
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
