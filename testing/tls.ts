/**
 * HTTPS in tests: a GET on a fresh connection that trusts the given CA (or
 * only the system's roots), and a certificate directory for skopeo
 * (`--src-cert-dir`/`--dest-cert-dir` read `*.crt` there as CAs).
 */
import { copyFileSync, mkdirSync } from "node:fs";
import type { IncomingHttpHeaders } from "node:http";
import https from "node:https";
import { join } from "node:path";
import { type After, tempDir } from "./harness.js";

export interface HttpsAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** GET `url` trusting `ca` (PEM; undefined: the system's roots); rejects on a TLS or network error. */
export function httpsGet(url: string, ca?: Buffer | string): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { agent: false, ...(ca === undefined ? {} : { ca }) }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => {
        body += d;
      });
      res.once("error", reject);
      res.once("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.once("error", reject);
    req.setTimeout(10_000, () => req.destroy(new Error("timeout")));
  });
}

/** A directory holding the CA certificate file `ca` as `ca.crt`, removed after the test. */
export function skopeoCertDir(after: After, ca: string): string {
  const dir = join(tempDir(after, "meridian-certdir-"), "certs");
  mkdirSync(dir);
  copyFileSync(ca, join(dir, "ca.crt"));
  return dir;
}
