/**
 * Who may call the peer's RPCs: the access rule and the wrapper that applies
 * it to every handler of the Peer service (control-plane/peer-service.ts)
 * and to the byte channel (control-plane/blob-channel.ts).
 *
 * Who may call what. Under mutual TLS every caller presents a certificate
 * of the mesh CA; its subject CN is its identity. A region's identity (one
 * of `regions`: its peer, node, worker and the admin commands) may call every
 * RPC. Any other identity of the mesh CA — the front door's (`front-door`)
 * — may call only `NON_REGION_RPCS`: the front door needs Status or its
 * ping form PingStatus (health,
 * applied positions, epoch, fence) and nothing that serves content, so its
 * certificate, if stolen, fetches no blob or manifest. Refusals are
 * PERMISSION_DENIED. A plaintext mesh (`"insecure": true`) carries no
 * identities and is not checked.
 */
import type * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { PeerHandlers } from "../protocol/generated/meridian/peer/v1/Peer.js";

/** The RPCs a caller whose identity is not a region may make (the front door's health probe). */
export const NON_REGION_RPCS: ReadonlySet<string> = new Set(["Status", "PingStatus"]);

/**
 * May a caller presenting `identity` (its certificate's subject CN, "" when
 * it has none) call `method`? `regions` undefined: a plaintext mesh, where
 * nobody has an identity and everything is allowed. Pure.
 */
export function peerMayCall(
  identity: string,
  method: string,
  regions: readonly string[] | undefined,
): boolean {
  if (regions === undefined) return true;
  return regions.includes(identity) || NON_REGION_RPCS.has(method);
}

/** What the handlers need of a call to authorize it (every kind of grpc-js server call has these). */
type AuthorizedCall = Pick<grpc.ServerUnaryCall<unknown, unknown>, "getAuthContext" | "emit">;

/**
 * Identities by HTTP/2 session: a TLS session's peer certificate is fixed at
 * its handshake (Node has no client-certificate renegotiation), while
 * getAuthContext() converts it into a JavaScript object again on every call,
 * about a tenth of a resting peer's CPU with heartbeats, the nodes' fence
 * polls and the front door's probes arriving several times a second (issue
 * 14, cost at rest). The session is grpc-js's internal `call.stream.session`;
 * where it is not found the identity is read each call, as before.
 */
const sessionIdentities = new WeakMap<object, string>();

/** The caller's identity: its TLS certificate's subject CN; "" without a certificate or a CN. */
function callerIdentity(call: AuthorizedCall): string {
  const session = (call as { call?: { stream?: { session?: unknown } } }).call?.stream?.session;
  const keyed = typeof session === "object" && session !== null ? session : undefined;
  const known = keyed === undefined ? undefined : sessionIdentities.get(keyed);
  if (known !== undefined) return known;
  const cn = call.getAuthContext()?.sslPeerCertificate?.subject?.CN as string | string[] | undefined;
  const identity = (Array.isArray(cn) ? cn[0] : cn) ?? "";
  if (keyed !== undefined) sessionIdentities.set(keyed, identity);
  return identity;
}

/**
 * Every handler of `handlers` behind `peerMayCall`: a caller whose
 * certificate's identity may not call an RPC gets PERMISSION_DENIED before
 * the handler runs.
 */
export function authorizeByIdentity(
  handlers: PeerHandlers,
  regions: readonly string[] | undefined,
  logger?: Logger,
): PeerHandlers {
  if (regions === undefined) return handlers;
  const out: Record<string, unknown> = {};
  for (const [method, handler] of Object.entries(handlers)) {
    out[method] = (call: AuthorizedCall, callback?: grpc.sendUnaryData<unknown>) => {
      const identity = callerIdentity(call);
      if (peerMayCall(identity, method, regions)) {
        (handler as (c: AuthorizedCall, cb?: grpc.sendUnaryData<unknown>) => void)(call, callback);
        return;
      }
      logger?.warn({ identity, method }, "peer call refused: identity may not call it");
      const denied = {
        code: 7 as grpc.status, // PERMISSION_DENIED
        details: `${identity === "" ? "a certificate without a name" : identity} may not call ${method}`,
      };
      if (callback !== undefined) callback(denied);
      else call.emit("error", denied);
    };
  }
  return out as unknown as PeerHandlers;
}
