/**
 * A real OpenLDAP directory for tests (Debian's `slapd`, loaded with
 * `ldapadd` from `ldap-utils`): one slapd per call in a temporary
 * directory, configured by a slapd.conf (`slapd -f`, the core, cosine,
 * inetorgperson and nis schemas, an mdb database, the memberof overlay so
 * user entries carry `memberOf`), listening on 127.0.0.1 only: ldap:// (with
 * StartTLS) and ldaps:// on two reserved ports, with a certificate for
 * 127.0.0.1 from a test CA (cli/certs.ts). The entries (LDIF) are users with
 * passwords, groups (groupOfNames) and a service account that may read
 * people and groups but no password; anonymous clients may only bind.
 *
 * `stop()` kills it by pid (data kept), `start()` starts it again on the
 * same ports with the same data, `pause()`/`resume()` SIGSTOP/SIGCONT it (a
 * directory that accepts connections and never answers). Stopped and
 * removed after the test.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { ensureMeshCerts } from "../cli/certs.js";
import { type After, freePort, tempDir } from "./harness.js";

const run = promisify(execFile);

export const LDAP_BASE = "dc=example,dc=org";
export const LDAP_ROOT_DN = `cn=admin,${LDAP_BASE}`;
export const LDAP_SERVICE_DN = `cn=meridian,ou=services,${LDAP_BASE}`;
const ROOT_PASSWORD = "root-secret";
const SERVICE_PASSWORD = "service-secret";

export interface DirectoryUser {
  uid: string;
  password: string;
  /** cn of the groups (under ou=groups) it belongs to. */
  groups?: string[];
}

export interface TestDirectory {
  /** ldap://127.0.0.1:PORT (StartTLS available). */
  url: string;
  /** ldaps://127.0.0.1:PORT. */
  ldapsUrl: string;
  /** The CA that signed the server's certificate (PEM file). */
  caFile: string;
  /** The service account and a file holding its password. */
  bindDN: string;
  bindPasswordFile: string;
  userBase: string;
  groupBase: string;
  pid(): number | undefined;
  stop(): Promise<void>;
  start(): Promise<void>;
  pause(): void;
  resume(): void;
  /** Apply an LDIF change record as the directory's root (ldapmodify). */
  modify(changes: string): Promise<void>;
}

/** Start slapd with `users` (and their groups); resolves once it answers. */
export async function startTestLdap(after: After, users: readonly DirectoryUser[]): Promise<TestDirectory> {
  const dir = tempDir(after, "meridian-ldap-");
  const certs = await ensureMeshCerts(join(dir, "certs"), ["ldap"]);
  const pair = certs.regions.ldap!;
  mkdirSync(join(dir, "db"));
  const [port, tlsPort] = [await freePort(), await freePort()];
  const conf = join(dir, "slapd.conf");
  writeFileSync(
    conf,
    [
      "include /etc/ldap/schema/core.schema",
      "include /etc/ldap/schema/cosine.schema",
      "include /etc/ldap/schema/inetorgperson.schema",
      "include /etc/ldap/schema/nis.schema",
      "modulepath /usr/lib/ldap",
      "moduleload back_mdb",
      "moduleload memberof",
      `pidfile ${join(dir, "slapd.pid")}`,
      `TLSCACertificateFile ${certs.ca}`,
      `TLSCertificateFile ${pair.cert}`,
      `TLSCertificateKeyFile ${pair.key}`,
      "database mdb",
      `suffix "${LDAP_BASE}"`,
      `rootdn "${LDAP_ROOT_DN}"`,
      `rootpw ${ROOT_PASSWORD}`,
      `directory ${join(dir, "db")}`,
      "maxsize 67108864",
      "overlay memberof",
      "memberof-group-oc groupOfNames",
      "memberof-member-ad member",
      "memberof-memberof-ad memberOf",
      "access to attrs=userPassword by anonymous auth by self write by * none",
      `access to * by dn.exact="${LDAP_SERVICE_DN}" read by self read by * none`,
      "",
    ].join("\n"),
  );
  const bindPasswordFile = join(dir, "service-password");
  writeFileSync(bindPasswordFile, `${SERVICE_PASSWORD}\n`, { mode: 0o600 });
  const url = `ldap://127.0.0.1:${port}`;
  const ldapsUrl = `ldaps://127.0.0.1:${tlsPort}`;
  let child: ChildProcess | undefined;

  const start = async () => {
    child = spawn("slapd", ["-f", conf, "-h", `${url}/ ${ldapsUrl}/`, "-d", "0"], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr?.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    const started = child;
    for (let i = 0; i < 100; i++) {
      if (started.exitCode !== null) throw new Error(`slapd exited (${started.exitCode}): ${stderr}`);
      if ((await accepts(port)) && (await accepts(tlsPort))) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`slapd did not listen within 10 s: ${stderr}`);
  };
  const stop = async () => {
    const c = child;
    child = undefined;
    if (c === undefined || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once("exit", r));
    c.kill("SIGCONT");
    c.kill("SIGKILL");
    await exited;
  };
  after(stop);
  await start();
  await apply("ldapadd", url, ldif(users), dir);
  return {
    url,
    ldapsUrl,
    caFile: certs.ca,
    bindDN: LDAP_SERVICE_DN,
    bindPasswordFile,
    userBase: `ou=people,${LDAP_BASE}`,
    groupBase: `ou=groups,${LDAP_BASE}`,
    pid: () => child?.pid,
    stop,
    start,
    pause: () => child?.kill("SIGSTOP"),
    resume: () => child?.kill("SIGCONT"),
    modify: (changes) => apply("ldapmodify", url, changes, dir),
  };
}

/** The directory's entries: the tree, the service account, `users`, and their groups. */
export function ldif(users: readonly DirectoryUser[]): string {
  const entries: string[] = [
    `dn: ${LDAP_BASE}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example`,
    ...["people", "groups", "services"].map(
      (ou) => `dn: ou=${ou},${LDAP_BASE}\nobjectClass: organizationalUnit\nou: ${ou}`,
    ),
    `dn: ${LDAP_SERVICE_DN}\nobjectClass: person\ncn: meridian\nsn: service\nuserPassword: ${SERVICE_PASSWORD}`,
  ];
  for (const u of users)
    entries.push(
      `dn: uid=${u.uid},ou=people,${LDAP_BASE}\nobjectClass: inetOrgPerson\nuid: ${u.uid}\ncn: ${u.uid}\nsn: ${u.uid}\nuserPassword: ${u.password}`,
    );
  const groups = new Map<string, string[]>();
  for (const u of users) for (const g of u.groups ?? []) groups.set(g, [...(groups.get(g) ?? []), u.uid]);
  for (const [cn, members] of groups)
    entries.push(
      [
        `dn: cn=${cn},ou=groups,${LDAP_BASE}`,
        "objectClass: groupOfNames",
        `cn: ${cn}`,
        ...members.map((m) => `member: uid=${m},ou=people,${LDAP_BASE}`),
      ].join("\n"),
    );
  return `${entries.join("\n\n")}\n`;
}

async function apply(tool: "ldapadd" | "ldapmodify", url: string, text: string, dir: string): Promise<void> {
  const file = join(dir, "change.ldif");
  writeFileSync(file, text);
  await run(tool, ["-x", "-H", url, "-D", LDAP_ROOT_DN, "-w", ROOT_PASSWORD, "-f", file], {
    timeout: 15_000,
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}
