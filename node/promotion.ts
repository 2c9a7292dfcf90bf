/**
 * Promotion (issue 17, item 2; the pure parts are protocol/promotion.ts and
 * protocol/gates.ts): `POST /admin/v1/promotions` on the source region's
 * node (node/http/admin/promotions.ts) calls `Promoter.promote`, which
 *
 *  1. resolves the source tag to a digest in this region;
 *  2. names the destination (a region of the mesh, an external endpoint, or
 *     another repository of this region) and the promotion's stable id;
 *  3. answers a retry of a passed promotion from its record, once the
 *     destination still holds the tag at that digest (no second copy);
 *  4. gathers the evidence from this node's store (node/evidence.ts) and
 *     evaluates every gate configuration that applies (destination and the
 *     destination repository's project);
 *  5. refused: records `promotion.recorded` (failed) and throws
 *     PromotionRefusedError (403 DENIED, every failed gate's reason);
 *  6. passed: copies the closure, referrers included, by digest
 *     (mesh-client/oci-copy.ts copyClosure) from this node's store
 *     (./promotion-source.ts) to the destination's OCI API, sets the
 *     destination tag there, checks that the tag now resolves to the digest,
 *     and only then records `promotion.recorded` (passed).
 *
 * How content reaches another Meridian region: through that region's OCI API
 * (its `registry` URL in mesh.json), as any client pushes, with a `service`
 * token this node mints with the mesh's token key when authentication is on
 * (the regions trust it as a system admin; auth off: no token). The push is
 * the destination region's own commit: its log holds the manifest and tag
 * events, it replicates onward by its policies like any push, and the tag is
 * set in that region. The same path is used for another repository of this
 * region (its URL from mesh.json; blobs are mounted, not sent again). An
 * external endpoint gets the same copy with the credentials file, CA file and
 * TLS setting of its endpoint object, read here where it is used.
 */
import { readFileSync } from "node:fs";
import type { Logger } from "pino";
import { copyClosure } from "../mesh-client/oci-copy.js";
import { readCredentialsFile } from "../mesh-client/oci-credentials.js";
import { ExternalRegistryError, OciRegistryClient } from "../mesh-client/oci-registry-client.js";
import type { Digest } from "../protocol/digest.js";
import {
  ManifestNotFoundError,
  MeridianError,
  PolicyInvalidError,
  PromotionCopyError,
  PromotionRefusedError,
  UnsupportedError,
} from "../protocol/errors.js";
import { evaluateGates } from "../protocol/gates.js";
import { type Mesh, regionOf } from "../protocol/mesh.js";
import {
  MAX_REASON,
  type PromotionDestination,
  type PromotionRecord,
  type PromotionSource,
  parseDestination,
  parseSourceReference,
  promotionId,
  type RecordedGate,
  scopesFor,
  scopeText,
} from "../protocol/promotion.js";
import type { Registry } from "./data/registry.js";
import { annotationsAndLabels, findReports, findSignatures, tagSetAt } from "./evidence.js";
import { RegistrySource } from "./promotion-source.js";

export interface PromoterOptions {
  registry: Registry;
  /** Public keys by name (node setting verification.keys). */
  keys: ReadonlyMap<string, string>;
  /** The mesh (mesh.json): where other regions, and this one, answer OCI requests. */
  mesh?: Mesh;
  /** A bearer token other regions accept for pushes (a service token); undefined with auth off. */
  serviceToken?: () => Promise<string>;
  logger: Logger;
  /** Each request to a destination answers within this (default 30 s). */
  deadlineMs?: number;
}

export interface PromotionAnswer extends PromotionRecord {
  /** True when this answer is a retry's, from the record (nothing copied again). */
  repeated: boolean;
  copied?: {
    manifests: number;
    blobsCopied: number;
    blobsSkipped: number;
    bytesCopied: number;
    referrers: number;
  };
  seq?: number;
}

export class Promoter {
  constructor(private readonly o: PromoterOptions) {}

  async promote(sourceText: string, destinationText: string, actor: string): Promise<PromotionAnswer> {
    const reg = this.o.registry;
    let src: { repository: string; tag: string };
    try {
      src = parseSourceReference(sourceText);
    } catch (err) {
      throw new PolicyInvalidError((err as Error).message, { detail: { source: sourceText.slice(0, 200) } });
    }
    const regions = this.o.mesh?.regions.map((r) => r.name) ?? [reg.region];
    const endpoints = (await reg.view.endpoints.endpoints()).map((e) => e.endpoint.name);
    let destination: PromotionDestination;
    try {
      destination = parseDestination(destinationText, { ...src, region: reg.region }, regions, endpoints);
    } catch (err) {
      throw new PolicyInvalidError((err as Error).message, {
        detail: { destination: destinationText.slice(0, 200), regions, endpoints },
      });
    }
    // The input is checked before anything is looked up.
    const resolved = await reg.resolveManifest(src.repository, { tag: src.tag }).catch((err) => {
      if (err instanceof ManifestNotFoundError)
        throw new ManifestNotFoundError(`${src.repository}:${src.tag} is not in region ${reg.region}`, {
          detail: { repo: src.repository, tag: src.tag, region: reg.region },
        });
      throw err;
    });
    const source: PromotionSource = { region: reg.region, ...src, digest: resolved.digest };
    const id = promotionId(source, destination);
    const log = this.o.logger.child({
      promotion: id,
      repo: src.repository,
      tag: src.tag,
      digest: source.digest,
    });

    const before = await reg.view.promotions.promotion(id);
    if (before?.record.outcome === "passed") {
      const to = await this.#client(destination);
      const there = await to.headManifest(destination.repository, destination.tag).catch(() => undefined);
      if (there?.digest === source.digest) {
        log.info("promotion repeated");
        return { ...before.record, repeated: true };
      }
    }

    const gates = await this.#judge(source, destination, resolved.bytes);
    const passed = gates.every((g) => g.ok);
    const record: PromotionRecord = {
      promotionId: id,
      source,
      destination,
      gates,
      outcome: passed ? "passed" : "failed",
    };
    if (!passed) {
      const seq = await reg.commitAdmin({ type: "promotion.recorded", ...record }, actor);
      const failed = gates.filter((g) => !g.ok);
      log.info({ failed: failed.map((g) => g.gate) }, "promotion refused");
      const reasons = failed.map((g) => `[${g.scope}] ${g.reason}`);
      throw new PromotionRefusedError(`promotion refused: ${reasons.join("; ")}`, {
        detail: { ...record, seq, errors: reasons },
      });
    }
    const copied = await this.#copy(source, destination);
    const seq = await reg.commitAdmin({ type: "promotion.recorded", ...record }, actor);
    log.info({ bytes: copied.bytesCopied }, "promotion passed");
    return { ...record, repeated: false, copied, seq };
  }

  /** Every gate of every configuration that applies, each result naming its scope. */
  async #judge(s: PromotionSource, d: PromotionDestination, manifest: Buffer): Promise<RecordedGate[]> {
    const reg = this.o.registry;
    const configs = [];
    for (const scope of scopesFor(d)) {
      const stored = await reg.view.promotions.gate(scope);
      if (stored !== undefined) configs.push(stored);
    }
    if (configs.length === 0) return [];
    const digest = s.digest as Digest;
    const types = configs.flatMap((c) => c.gates.vulnerabilities?.artifactTypes ?? []);
    const needSignatures = configs.some((c) => c.gates.signature !== undefined);
    const evidence = {
      subject: s.digest,
      signatures: needSignatures ? await findSignatures(reg, s.repository, digest) : [],
      keys: this.o.keys,
      reports: types.length > 0 ? await findReports(reg, s.repository, digest, types) : [],
      ...(await annotationsAndLabels(reg, s.repository, manifest)),
      now: Date.now(),
    };
    const at = await tagSetAt(reg, s.repository, s.tag, s.digest);
    const withAge = at === undefined ? evidence : { ...evidence, tagSetAt: at };
    return configs.flatMap((c) =>
      evaluateGates(c.gates, withAge).results.map((r) => ({
        ...r,
        // The record keeps a reason of at most MAX_REASON characters (protocol/promotion.ts).
        reason: r.reason.length > MAX_REASON ? `${r.reason.slice(0, MAX_REASON - 1)}…` : r.reason,
        scope: scopeText(c.scope),
      })),
    );
  }

  async #copy(s: PromotionSource, d: PromotionDestination) {
    const to = await this.#client(d);
    const from = new RegistrySource(
      this.o.registry,
      // Within this region blobs are mounted from the source repository, not sent again.
      d.kind !== "endpoint" && d.name === this.o.registry.region ? to.base.href : "http://local.invalid",
    );
    try {
      const copied = await copyClosure(
        from,
        to,
        { repository: s.repository, reference: s.digest },
        { repository: d.repository, reference: d.tag },
      );
      const there = await to.headManifest(d.repository, d.tag);
      if (there?.digest !== s.digest)
        throw new PromotionCopyError(
          `${d.repository}:${d.tag} at ${d.name} resolves to ${there?.digest ?? "nothing"} after the copy, not ${s.digest}`,
        );
      const { digest: _d, ...counts } = copied;
      return counts;
    } catch (err) {
      if (err instanceof PromotionCopyError) throw err;
      const message = err instanceof MeridianError || err instanceof Error ? err.message : String(err);
      throw new PromotionCopyError(`copy to ${d.kind} ${d.name} failed: ${message}`, {
        cause: err,
        detail: { destination: d, ...(err instanceof ExternalRegistryError ? { status: err.status } : {}) },
      });
    }
  }

  /** An OCI client of the destination's registry. */
  async #client(d: PromotionDestination): Promise<OciRegistryClient> {
    const deadlineMs = this.o.deadlineMs ?? 30_000;
    if (d.kind === "endpoint") {
      const found = await this.o.registry.view.endpoints.endpoint(d.name);
      if (found === undefined) throw new PolicyInvalidError(`endpoint ${d.name} not found`);
      const e = found.endpoint;
      try {
        return new OciRegistryClient({
          url: e.url,
          insecure: e.insecure,
          deadlineMs,
          ...(e.credentialsFile === undefined
            ? {}
            : { credentials: readCredentialsFile(e.credentialsFile).credentials }),
          ...(e.caFile === undefined ? {} : { ca: readFileSync(e.caFile) }),
        });
      } catch (err) {
        throw new PromotionCopyError(`endpoint ${d.name}: ${(err as Error).message}`, { cause: err });
      }
    }
    const mesh = this.o.mesh;
    if (mesh === undefined)
      throw new UnsupportedError(
        "promotion to a region or repository needs the mesh (mesh.json) on this node",
      );
    const region = regionOf(mesh, d.name);
    const token = await this.o.serviceToken?.();
    return new OciRegistryClient({
      url: region.registry,
      deadlineMs,
      ...(token === undefined ? {} : { credentials: { token } }),
      ...(mesh.tls === undefined || !region.registry.startsWith("https:")
        ? {}
        : { ca: readFileSync(mesh.tls.ca) }),
    });
  }
}
