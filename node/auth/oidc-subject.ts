/**
 * An OIDC user as the authenticator (./authenticator.ts) keeps it (issue 18):
 * made from the view's OIDC projection (node/data/projections/oidc-users.ts)
 * when the name is no local user. Its roles are those its groups granted at
 * its latest sign-in; its password is its CLI secret (the hash; none: no
 * password works).
 *
 * The credential fingerprint every token issued to it carries covers both
 * the CLI secret's hash and the sign-in's session id: rotating or revoking
 * the secret, signing in again (roles possibly changed) or signing out ends
 * every token issued before, in every region as it applies the event.
 */
import type { MetadataView } from "../data/view.js";
import { credentialFingerprint } from "./credentials.js";
import type { StoredSubject } from "./lookup-cache.js";

/** No CLI secret: a hash no password matches (passwords.ts refuses what it cannot parse). */
export const NO_SECRET = "none";

/** `revokedBefore`: the user's token revocation (an admin's `tokens.revoked`), as for local users. */
export async function oidcSubject(
  view: MetadataView,
  name: string,
  revokedBefore?: number,
): Promise<StoredSubject | undefined> {
  const [user, secret] = await Promise.all([view.oidc.user(name), view.oidc.secret(name)]);
  if (user === undefined) return undefined;
  const hash = secret?.secretHash ?? NO_SECRET;
  return {
    ...(revokedBefore === undefined ? {} : { revokedBefore }),
    hash,
    cred: credentialFingerprint(`${hash}|${user.session ?? "-"}`),
    subject: {
      kind: "user",
      name,
      systemAdmin: user.systemAdmin,
      roles: user.roles,
      ...(user.operator ? { operator: true } : {}),
    },
  };
}
