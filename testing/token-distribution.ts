/**
 * A real CNCF Distribution behind Distribution's token auth, with a token
 * service that grants what `grants(scope)` allows to one user (Basic
 * credentials at the realm): a registry that refuses its catalog
 * (`registry:catalog:*` not granted) as Harbor and Docker Hub do for most
 * users, while serving and taking repositories. The token key is a P-256
 * key with a self-signed certificate, made with openssl; Distribution trusts
 * it as its root bundle.
 */
import { execFile } from "node:child_process";
import { createPrivateKey, randomBytes, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { promisify } from "node:util";
import { SignJWT } from "jose";
import { type Distribution, startDistribution } from "./distribution.js";
import { type After, tempDir } from "./harness.js";

const exec = promisify(execFile);

export async function startTokenDistribution(
  after: After,
  o: { user: string; password: string; grants: (scope: string) => boolean },
): Promise<Distribution> {
  const dir = tempDir(after, "meridian-token-dist-");
  const key = join(dir, "key.pem");
  const cert = join(dir, "cert.pem");
  await exec(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      "1",
      "-subj",
      "/CN=meridian-test-token",
    ],
    { timeout: 30_000 },
  );
  const x5c = new X509Certificate(readFileSync(cert)).raw.toString("base64");
  const signingKey = createPrivateKey(readFileSync(key));
  const expected = `Basic ${Buffer.from(`${o.user}:${o.password}`).toString("base64")}`;
  const tokens = createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    if (req.headers.authorization !== expected) {
      res.writeHead(401, { "content-type": "application/json" });
      res.end(JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message: "bad credentials" }] }));
      return;
    }
    // Granted scopes get every action they ask; the others none (Distribution then answers 401).
    const access = url.searchParams
      .getAll("scope")
      .filter((s) => o.grants(s))
      .map((s) => {
        const [type, name, actions] = s.split(":");
        return { type, name, actions: (actions ?? "").split(",") };
      });
    const token = await new SignJWT({ access })
      .setProtectedHeader({ alg: "ES256", x5c: [x5c] })
      .setIssuer("meridian-test")
      .setAudience(url.searchParams.get("service") ?? "")
      .setSubject(o.user)
      .setIssuedAt()
      .setNotBefore("-10s")
      .setExpirationTime("5m")
      .setJti(randomBytes(8).toString("hex"))
      .sign(signingKey);
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ token, expires_in: 300 }));
  });
  await new Promise<void>((r) => tokens.listen(0, "127.0.0.1", r));
  after(
    () =>
      new Promise((r) => {
        tokens.closeAllConnections();
        tokens.close(() => r());
      }),
  );
  const realm = `http://127.0.0.1:${(tokens.address() as { port: number }).port}/token`;
  return startDistribution(after, {
    token: { realm, service: "meridian-test", issuer: "meridian-test", rootCertFile: cert },
  });
}
