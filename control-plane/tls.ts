/**
 * gRPC credentials from the mesh (protocol/mesh.ts): mutual TLS under one mesh
 * CA, region R presenting `<dir>/R.crt` + `<dir>/R.key` both as a server and
 * as a client; plaintext only when the mesh says `"insecure": true`.
 *
 * The client side (`peerCredentials`) is in mesh-client/peer-client.ts, which
 * every caller of a peer imports; this file is the server's.
 *
 * Callers check a server's identity against its region name (the
 * `grpc.ssl_target_name_override` set in mesh-client/peer-client.ts), so R.crt must carry
 * DNS:R among its names, as cli/certs.ts makes it (with DNS:localhost and
 * IP:127.0.0.1).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import type { Mesh } from "../protocol/mesh.js";

/** A peer's server credentials: client certificates signed by the mesh CA are required. */
export function serverCredentials(mesh: Mesh, region: string): grpc.ServerCredentials {
  if (mesh.tls === undefined) {
    if (mesh.insecure !== true) throw new Error("mesh has neither tls nor insecure: true");
    return grpc.ServerCredentials.createInsecure();
  }
  return grpc.ServerCredentials.createSsl(
    readFileSync(mesh.tls.ca),
    [
      {
        cert_chain: readFileSync(join(mesh.tls.dir, `${region}.crt`)),
        private_key: readFileSync(join(mesh.tls.dir, `${region}.key`)),
      },
    ],
    true,
  );
}
