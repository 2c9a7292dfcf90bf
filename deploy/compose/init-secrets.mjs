#!/usr/bin/env node
// The one-shot `secrets` service of deploy/compose (it runs in the Meridian
// image, from /app): every secret the trial mesh needs, generated on first
// start into volumes and kept on later starts (rerunning changes nothing; to
// rotate one, delete its file and start the mesh again).
//
//   node deploy/compose/init-secrets.mjs --mesh FILE --secrets DIR --nats-config DIR
//
// From FILE (mesh.json) come the regions and each region's nats-servers; into
// --secrets (the `secrets` volume, mounted read-only by the Meridian
// services at /secrets):
//
//   nats-auth/<region>-{node,peer,worker}.seed, operator.seed
//                         NKEY seeds (cli/nats-auth.ts ensureNatsIdentities): a
//                         process signs in with MERIDIAN_NATS_SEED_FILE and
//                         MERIDIAN_NATS_INBOX_PREFIX=_INBOX_<region>-<role>
//   nats-auth/route-password   the routes' password inside each region's cluster
//   auth/token-key.pem    the mesh's token signing key (every node, peer, front door)
//   auth/admin-password   the first password of the system admin `admin`
//   s3/credentials.json   MinIO's access key and secret, as the S3 store reads
//                         them (MERIDIAN_S3_CREDENTIALS_FILE); s3/access-key and
//                         s3/secret-key are the same for MinIO and `mc`
//
// and into --nats-config (the `nats-config` volume, mounted read-only by the
// nats-servers at /etc/nats/generated; public keys and the route password):
//
//   authorization-<region>.conf   cli/nats-auth.ts authorizationFor: who may
//                                 connect to that region's servers, and do what
//   cluster-<region>.conf         route authorization and the routes to every
//                                 server of the region's `nats` in mesh.json
//                                 (nats-route://meridian-route:PASSWORD@HOST:6222)
//
// Files are mode 0600 (directories 0700), owned by the image's `meridian`
// user; the nats-servers, MinIO and mc run as root and read them.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const dist = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "dist");
const { authorizationFor, ensureNatsIdentities } = await import(join(dist, "cli", "nats-auth.js"));
const { writeTokenKey } = await import(join(dist, "mesh-client", "token-key-file.js"));
const { natsServersOf, parseMesh } = await import(join(dist, "protocol", "mesh.js"));

/** The route port of every nats-server (deploy/compose/nats/<region>.conf `cluster.listen`). */
const ROUTE_PORT = 6222;
const ROUTE_USER = "meridian-route";

const { values } = parseArgs({
  options: {
    mesh: { type: "string" },
    secrets: { type: "string" },
    "nats-config": { type: "string" },
  },
});
if (values.mesh === undefined || values.secrets === undefined || values["nats-config"] === undefined) {
  process.stderr.write("usage: init-secrets.mjs --mesh FILE --secrets DIR --nats-config DIR\n");
  process.exit(2);
}
const mesh = parseMesh(JSON.parse(readFileSync(values.mesh, "utf8")));
const regions = mesh.regions.map((r) => r.name);
const secrets = values.secrets;
const natsConfig = values["nats-config"];
for (const d of [secrets, natsConfig, join(secrets, "auth"), join(secrets, "s3")])
  mkdirSync(d, { recursive: true, mode: 0o700 });

/** `file` with `make()`'s text, unless it exists (0600; never replaced). */
function once(file, make) {
  if (!existsSync(file)) writeFileSync(file, make(), { mode: 0o600, flag: "wx" });
  return readFileSync(file, "utf8");
}
const token = (bytes) => randomBytes(bytes).toString("base64url");

const identities = ensureNatsIdentities(join(secrets, "nats-auth"), regions);
const routePassword = once(join(secrets, "nats-auth", "route-password"), () => `${token(24)}\n`).trim();
for (const region of mesh.regions) {
  // Rewritten on every run: a seed deleted to rotate it gives a new public key here.
  const auth = `authorization: ${JSON.stringify(authorizationFor(identities, region.name))}\n`;
  writeFileSync(join(natsConfig, `authorization-${region.name}.conf`), auth, { mode: 0o600 });
  const routes = natsServersOf(region).map(
    (url) => `nats-route://${ROUTE_USER}:${routePassword}@${new URL(url).hostname}:${ROUTE_PORT}`,
  );
  const cluster = `authorization: ${JSON.stringify({ user: ROUTE_USER, password: routePassword })}\nroutes: ${JSON.stringify(routes)}\n`;
  writeFileSync(join(natsConfig, `cluster-${region.name}.conf`), cluster, { mode: 0o600 });
}

await writeTokenKey(join(secrets, "auth", "token-key.pem"));
once(join(secrets, "auth", "admin-password"), () => `${token(18)}\n`);

const accessKey = once(join(secrets, "s3", "access-key"), () => `meridian-${token(6)}\n`).trim();
const secretKey = once(join(secrets, "s3", "secret-key"), () => `${token(30)}\n`).trim();
once(
  join(secrets, "s3", "credentials.json"),
  () => `${JSON.stringify({ accessKeyId: accessKey, secretAccessKey: secretKey })}\n`,
);

process.stdout.write(`secrets ready for regions ${regions.join(", ")}: ${secrets}, ${natsConfig}\n`);
