/**
 * The CPU floor of a blob push per request (perblob.ts): the least a
 * registry written in Node must do for the requests clients send per blob
 * (`HEAD` → 404, empty `POST` → 202 with a Location, `PUT ?digest=` with the
 * body → 201), and nothing more: no authentication, no sessions, no events,
 * no view. One process on 127.0.0.1, printing `{"port":N}` when listening,
 * exiting on SIGTERM:
 *
 *   node dist/benchmarks/floor-server.js <http|fastify|http-store|fastify-store>
 *
 * `http`: node:http, every body hashed with sha256 and dropped (like
 * sink-server.ts). `fastify`: the same behind fastify 5 (routing, hooks and
 * reply machinery; the registry's HTTP framework). `-store`: the body is also
 * written the way Meridian's filesystem store writes a blob (hashed on the
 * way, one writev(2) per MiB, fsync, rename into place; the digest is
 * checked), so the difference to Meridian is what Meridian does per request
 * beyond HTTP and durable bytes.
 */
import { createHash, randomUUID } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { rename } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fastify from "fastify";
import { streamToFile } from "../node/data/stream-to-file.js";

const MODES = ["http", "fastify", "http-store", "fastify-store"] as const;
type Mode = (typeof MODES)[number];

const mode = process.argv[2] as Mode;
if (!MODES.includes(mode)) {
  process.stderr.write(`usage: floor-server.js <${MODES.join("|")}>\n`);
  process.exit(2);
}
const root = mkdtempSync(join(tmpdir(), "meridian-floor-"));
mkdirSync(join(root, "tmp"));
mkdirSync(join(root, "blobs"));

/** Take the body: hash it; with a store, write, flush and rename it too. False when it does not match `digest`. */
async function take(req: IncomingMessage, digest: string | null): Promise<boolean> {
  const hash = createHash("sha256");
  if (!mode.endsWith("-store")) {
    for await (const chunk of req) hash.update(chunk as Buffer);
    return digest === null || `sha256:${hash.digest("hex")}` === digest;
  }
  const tmp = join(root, "tmp", randomUUID());
  await streamToFile(req, tmp, "w", hash, 0, "flush", undefined);
  const actual = `sha256:${hash.digest("hex")}`;
  if (digest !== null && actual !== digest) {
    rmSync(tmp, { force: true });
    return false;
  }
  await rename(tmp, join(root, "blobs", actual.slice("sha256:".length)));
  return true;
}

let sessions = 0;
const digestOf = (url: string) => new URL(url, "http://x").searchParams.get("digest");

if (mode.startsWith("http")) {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.method === "HEAD") {
      res.writeHead(404, { "content-type": "application/json", "content-length": 0 }).end();
      return;
    }
    take(req, req.method === "PUT" ? digestOf(req.url ?? "/") : null).then(
      (ok) => {
        if (!ok) res.writeHead(400, { "content-length": 0 }).end();
        else if (req.method === "POST")
          res
            .writeHead(202, { location: `/v2/floor/blobs/uploads/${++sessions}`, "content-length": 0 })
            .end();
        else res.writeHead(201, { "content-length": 0 }).end();
      },
      () => res.destroy(),
    );
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, "127.0.0.1", () => {
    const address = server.address();
    process.stdout.write(
      `${JSON.stringify({ port: typeof address === "object" && address ? address.port : 0 })}\n`,
    );
  });
} else {
  const app = fastify({ exposeHeadRoutes: false, keepAliveTimeout: 60_000 });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", (_req, _payload, done) => done(null, undefined));
  app.route({
    method: "HEAD",
    url: "/v2/*",
    handler: async (_req, reply) =>
      reply.status(404).type("application/json").header("content-length", 0).send(),
  });
  app.post("/v2/*", async (req, reply) => {
    await take(req.raw, null);
    return reply
      .status(202)
      .headers({ location: `/v2/floor/blobs/uploads/${++sessions}`, "content-length": 0 })
      .send();
  });
  app.put("/v2/*", async (req, reply) => {
    const ok = await take(req.raw, digestOf(req.url));
    return reply
      .status(ok ? 201 : 400)
      .headers({ "content-length": 0 })
      .send();
  });
  const address = await app.listen({ port: 0, host: "127.0.0.1" });
  process.stdout.write(`${JSON.stringify({ port: Number(new URL(address).port) })}\n`);
}
for (const signal of ["SIGTERM", "SIGINT"] as const)
  process.on(signal, () => {
    rmSync(root, { recursive: true, force: true });
    process.exit(0);
  });
