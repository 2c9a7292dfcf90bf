/**
 * `meridian policy plan` for a policy's links to external endpoints (issue
 * 17): what a run would copy, per region and endpoint, planned as the
 * region's worker plans it (replication/endpoint-transfer.ts
 * `planRepository`): this region's tags from its peer, the endpoint's over
 * its OCI API with the credentials and CA files read here (the endpoint's
 * paths, as on the worker's host). A link that cannot be planned (the
 * endpoint not defined, unreachable, refusing the credentials) is shown
 * with its reason; nothing else stops.
 */
import { readFileSync } from "node:fs";
import { readCredentialsFile } from "../mesh-client/oci-credentials.js";
import { OciRegistryClient } from "../mesh-client/oci-registry-client.js";
import { PeerClient, peerCredentials } from "../mesh-client/peer-client.js";
import type { Endpoint } from "../protocol/endpoints.js";
import { RepositoryNotFoundError } from "../protocol/errors.js";
import { endpointLinks, isSignatureReferrer, type Policy } from "../protocol/policy.js";
import type { RepoState } from "../protocol/registers.js";
import { type EndpointPlan, endpointPlanStats } from "../replication/endpoint-plan.js";
import {
  endpointSide,
  linkRepositories,
  planRepository,
  type Side,
} from "../replication/endpoint-transfer.js";
import type { Context } from "./admin-client.js";

export interface EndpointLinkPlan {
  region: string;
  endpoint: string;
  direction: "export" | "import";
  src: string;
  dst: string;
  /** Repositories with something to do (tags in step with the other side are left out). */
  plans: EndpointPlan[];
  stats: Record<string, number>;
  /** Why the link could not be planned. */
  error?: string;
}

/** Plan every endpoint link of `policy`, region by region. */
export async function planEndpointLinks(ctx: Context, policy: Policy): Promise<EndpointLinkPlan[]> {
  const mesh = ctx.mesh();
  const out: EndpointLinkPlan[] = [];
  for (const region of mesh.regions) {
    for (const link of endpointLinks([policy], region.name)) {
      const ep = `endpoint:${link.endpoint}`;
      const shown: EndpointLinkPlan = {
        region: region.name,
        endpoint: link.endpoint,
        direction: link.direction,
        src: link.direction === "export" ? region.name : ep,
        dst: link.direction === "export" ? ep : region.name,
        plans: [],
        stats: {},
      };
      const peer = new PeerClient(region.name, region.grpc, peerCredentials(mesh, region.name));
      try {
        const endpoint = endpointSide(await clientOf(ctx, link.endpoint));
        const here = peerSide(peer);
        const [source, destination] = link.direction === "export" ? [here, endpoint] : [endpoint, here];
        for (const repo of await linkRepositories(link, source)) {
          const plan = await planRepository(link, source, destination, repo);
          plan.actions = plan.actions.filter((a) => a.kind !== "in-step");
          if (plan.actions.length > 0) shown.plans.push(plan);
        }
        shown.stats = endpointPlanStats(shown.plans);
      } catch (err) {
        shown.error = (err as Error).message;
      } finally {
        peer.close();
      }
      out.push(shown);
    }
  }
  return out;
}

/** The plan of one endpoint link, as lines of text. */
export function endpointPlanText(p: EndpointLinkPlan): string[] {
  const head = `${p.src} → ${p.dst} (${p.direction}, run by ${p.region}'s worker)`;
  if (p.error !== undefined) return [`${head}: cannot plan: ${p.error}`];
  if (p.plans.length === 0) return [`${head}: nothing to do`];
  const out = [`${head}: ${p.plans.length} repositor${p.plans.length === 1 ? "y" : "ies"}`];
  for (const plan of p.plans) {
    out.push(`  ${plan.repo}`);
    for (const a of plan.actions) {
      if (a.kind === "copy")
        out.push(
          `    copy ${a.tag} → ${a.digest}${a.replaces === undefined ? "" : ` (there: ${a.replaces})`}`,
        );
      else if (a.kind === "keep") out.push(`    keep ${a.tag}: ${a.reason}`);
    }
  }
  return out;
}

async function clientOf(ctx: Context, name: string): Promise<OciRegistryClient> {
  let e: Endpoint;
  try {
    e = await ctx.api().get<Endpoint>(`/endpoints/${encodeURIComponent(name)}`);
  } catch (err) {
    throw new Error(`endpoint ${name} is not defined (${(err as Error).message})`);
  }
  return new OciRegistryClient({
    url: e.url,
    ...(e.credentialsFile === undefined
      ? {}
      : { credentials: readCredentialsFile(e.credentialsFile).credentials }),
    ...(e.caFile === undefined ? {} : { ca: readFileSync(e.caFile) }),
    insecure: e.insecure,
  });
}

/** A region as a side of a link, from its peer's registers (the tags it shows). */
function peerSide(peer: PeerClient): Side {
  const states = new Map<string, Promise<RepoState>>();
  const state = (repo: string) => {
    let s = states.get(repo);
    if (s === undefined) {
      s = peer.repoState(repo).catch((err) => {
        if (err instanceof RepositoryNotFoundError) return { repo, tags: [], manifests: [], blobs: [] };
        throw err;
      });
      states.set(repo, s);
    }
    return s;
  };
  const live = (st: RepoState, d: string) => st.manifests.some((m) => m.digest === d && m.register.live);
  const referrers = async (repo: string, digest: string) =>
    (await state(repo)).manifests.filter((m) => m.register.live && m.register.record?.subject === digest);
  return {
    repositories: async () => (await peer.summarize("")).repos.map((r) => r.repo),
    tags: async (repo) => {
      const st = await state(repo);
      return st.tags.filter((t) => t.record.digest !== null && live(st, t.record.digest)).map((t) => t.tag);
    },
    digestOf: async (repo, tag) => {
      const st = await state(repo);
      const d = st.tags.find((t) => t.tag === tag)?.record.digest;
      return d !== null && d !== undefined && live(st, d) ? d : undefined;
    },
    referrers: async (repo, digest) => (await referrers(repo, digest)).map((m) => m.digest),
    signed: async (repo, digest) =>
      (await referrers(repo, digest)).some((m) =>
        isSignatureReferrer(m.register.record!.artifactType, m.register.record!.mediaType),
      ),
  };
}
