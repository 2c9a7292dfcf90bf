/**
 * HTTPS in tests: a GET on a fresh connection that trusts the given CA (or
 * only the system's roots), and a certificate directory for skopeo
 * (`--src-cert-dir`/`--dest-cert-dir` read `*.crt` there as CAs), and a
 * CA with a server certificate for 127.0.0.1 made by openssl (`serverCerts`).
 */
import { execFile } from "node:child_process";
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import type { IncomingHttpHeaders } from "node:http";
import https from "node:https";
import { join } from "node:path";
import { promisify } from "node:util";
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

/** A fresh P-256 CA (`ca`) and a certificate it signed for IP 127.0.0.1 (`cert`, `key`): PEM file paths. */
export async function serverCerts(after: After): Promise<{ ca: string; cert: string; key: string }> {
  const exec = promisify(execFile);
  const dir = tempDir(after, "meridian-server-certs-");
  const f = (n: string) => join(dir, n);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  const subj = (cn: string) => ["-subj", `/CN=${cn}`];
  await exec("openssl", [
    "req",
    "-x509",
    ...ec,
    "-keyout",
    f("ca.key"),
    "-out",
    f("ca.pem"),
    "-days",
    "1",
    ...subj("meridian-test-ca"),
  ]);
  await exec("openssl", ["req", ...ec, "-keyout", f("srv.key"), "-out", f("srv.csr"), ...subj("127.0.0.1")]);
  writeFileSync(f("ext"), "subjectAltName=IP:127.0.0.1\n");
  const sign = [
    "-CA",
    f("ca.pem"),
    "-CAkey",
    f("ca.key"),
    "-CAcreateserial",
    "-days",
    "1",
    "-extfile",
    f("ext"),
  ];
  await exec("openssl", ["x509", "-req", "-in", f("srv.csr"), "-out", f("srv.pem"), ...sign]);
  return { ca: f("ca.pem"), cert: f("srv.pem"), key: f("srv.key") };
}
