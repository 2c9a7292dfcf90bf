/**
 * Signature verification of a stored manifest, read-only, mounted under
 * /admin/v1 by ../admin.ts (system admins and operators, the gate's default):
 *
 *   GET /verify/<repo>@<digest>[?key=NAME]
 *     → 200 {repo, digest, ok, results: [{gate, ok, reason}], signatures: [where each was found]}
 *
 * The node reads (node/evidence.ts), from its own store only, the cosign signature manifests
 * of the digest (the `sha256-<hex>.sig` tag and the referrers of artifactType
 * `application/vnd.dev.cosign.artifact.sig.v1+json`, protocol/cosign.ts
 * signatureLocations) and their payload blobs, and evaluates the signature
 * gate (protocol/gates.ts) with the key NAME, or with any key configured in
 * `verification.keys` (node/config.ts) when no key is named. A signature that
 * fails answers ok:false with the reason (tampered payload, wrong key, …);
 * the digest not stored here is 404 MANIFEST_UNKNOWN.
 *
 * This is the check promotion and block-pull policies (issues 17, 18) call
 * before acting: the same pure code, fed from this node's store.
 */
import type { FastifyPluginAsync } from "fastify";
import { parseDigest } from "../../../protocol/digest.js";
import { UnsupportedError } from "../../../protocol/errors.js";
import { type GateEvidence, signatureGate } from "../../../protocol/gates.js";
import type { Registry } from "../../data/registry.js";
import { findSignatures } from "../../evidence.js";
import { Fixed, Type, want } from "./schema.js";

const VerifyQuery = Fixed({
  key: Type.Optional(want(Type.String({ minLength: 1 }), "a key name of verification.keys")),
});

export const verifyRoutes: FastifyPluginAsync<{
  registry: Registry;
  keys: ReadonlyMap<string, string>;
}> = async (admin, { registry, keys }) => {
  admin.get<{ Params: { "*": string }; Querystring: { key?: string } }>(
    "/verify/*",
    { schema: { querystring: VerifyQuery } },
    async (req) => {
      const target = req.params["*"];
      const at = target.lastIndexOf("@");
      if (at <= 0)
        throw new UnsupportedError("expected /verify/<repo>@<digest>", {
          detail: { target: target.slice(0, 300) },
        });
      const repo = target.slice(0, at);
      const digest = parseDigest(target.slice(at + 1));
      await registry.resolveManifest(repo, { digest }); // 404 MANIFEST_UNKNOWN when not stored here
      const key = req.query.key;
      const signatures = await findSignatures(registry, repo, digest);
      const evidence: GateEvidence = {
        subject: digest,
        signatures,
        keys,
        reports: [],
        annotations: {},
        labels: {},
        now: Date.now(),
      };
      const result = signatureGate(key === undefined ? [...keys.keys()] : [key], evidence);
      return { repo, digest, ok: result.ok, results: [result], signatures: signatures.map((s) => s.source) };
    },
  );
};
