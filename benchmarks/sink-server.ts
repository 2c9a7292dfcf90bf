/**
 * The floor of the push benchmarks (pushforms.ts): a plain node:http server
 * on 127.0.0.1 that takes an upload the way a registry must at least, and
 * nothing more: every request body is hashed with sha256 (a registry has to
 * verify the digest) and dropped. `POST` answers 202 with a Location, `PATCH`
 * 202, `PUT` 201; nothing is stored, flushed or recorded. What the benchmark's
 * client reaches against it is what any server can reach with that client on
 * this machine at that moment. Run as its own process; prints `{"port":N}`
 * when listening and exits on SIGTERM.
 */
import { createHash } from "node:crypto";
import { createServer } from "node:http";

let sessions = 0;
const server = createServer((req, res) => {
  const hash = createHash("sha256");
  req.on("data", (chunk: Buffer) => hash.update(chunk));
  req.on("end", () => {
    hash.digest();
    if (req.method === "POST") {
      res.writeHead(202, { location: `/v2/sink/blobs/uploads/${++sessions}`, "content-length": 0 }).end();
    } else if (req.method === "PATCH") {
      res.writeHead(202, { location: req.url ?? "/", "content-length": 0 }).end();
    } else {
      res.writeHead(201, { "content-length": 0 }).end();
    }
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  process.stdout.write(`${JSON.stringify({ port })}\n`);
});
for (const signal of ["SIGTERM", "SIGINT"] as const) process.on(signal, () => process.exit(0));
