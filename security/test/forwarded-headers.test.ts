/**
 * Issue 10, finding 12 (forwarded headers): nodes believed X-Forwarded-For
 * from all of 127.0.0.0/8 and ::1, so a local client rotating the header
 * sprayed passwords past the per-address limit and wrote made-up addresses
 * into the audit log; and the `WWW-Authenticate` realm reflected a client's
 * Host / X-Forwarded-Host. Against `meridian up --auth` (two regions and the
 * front door, real processes): nodes honour forwarded headers only from the
 * front door, which proves itself with a token minted with the mesh key.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { request } from "node:http";
import { after, describe, test } from "node:test";
import { cleanupStack } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";
import { OciClient } from "../../testing/oci-client.js";
import { audit, basic } from "./login-support.js";

const cleanup = cleanupStack({ after });

/** A GET with headers fetch() will not send (Host): status and headers. */
function rawGet(url: string, headers: Record<string, string>) {
  return new Promise<{ status: number; headers: Record<string, string | string[] | undefined> }>(
    (resolve, reject) => {
      const req = request(url, { headers }, (res) => {
        res.resume();
        res.once("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
      });
      req.once("error", reject);
      req.end();
    },
  );
}

const realm = (h: Record<string, string | string[] | undefined>) =>
  /realm="([^"]*)"/.exec(String(h["www-authenticate"] ?? ""))?.[1];

describe("forwarded headers", () => {
  let mesh: RunningMesh;
  let admins: Map<string, OciClient>;
  const started = new Date().toISOString();
  let viaFrontDoor: string;

  test("a mesh with authentication", async () => {
    mesh = await startMesh(cleanup, ["a", "b"], undefined, ["--auth"]);
    const password = readFileSync(mesh.adminPasswordFile!, "utf8").trim();
    admins = new Map(
      [...mesh.regions].map(([name, r]) => [name, new OciClient(r.registry, basic("admin", password))]),
    );
    // The admin signs in first: a verified credential is not limited, so the sprays below cannot lock it out.
    for (const admin of admins.values()) {
      for (let i = 0; i < 100 && (await admin.fetch("/admin/v1/whoami")).status !== 200; i++)
        await new Promise((r) => setTimeout(r, 200));
      assert.equal((await admin.fetch("/admin/v1/whoami")).status, 200);
    }
  });

  test("through the front door, a client's own X-Forwarded-For does not escape the limit", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) {
      const res = await fetch(`${mesh.frontDoor}/v2/`, {
        headers: {
          authorization: basic(`spray-fd-${i}`, "Winter2026!"),
          "x-forwarded-for": `198.51.100.${i}`,
        },
      });
      await res.arrayBuffer();
      viaFrontDoor = res.headers.get("meridian-region") ?? "";
      statuses.push(res.status);
    }
    assert.deepEqual(statuses, [401, 401, 401, 401, 401, 429, 429, 429]);
  });

  test("a local client rotating X-Forwarded-For straight at a node is limited after 5 failures", async () => {
    const target = [...mesh.regions.keys()].find((r) => r !== viaFrontDoor)!;
    const url = mesh.regions.get(target)!.registry;
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) {
      const res = await fetch(`${url}/v2/`, {
        headers: { authorization: basic(`spray-${i}`, "Winter2026!"), "x-forwarded-for": `203.0.113.${i}` },
      });
      await res.arrayBuffer();
      statuses.push(res.status);
    }
    assert.deepEqual(statuses, [401, 401, 401, 401, 401, 429, 429, 429]);
    // ... and audited with its real address, not the ones it made up.
    let records: Array<Record<string, unknown>> = [];
    for (let i = 0; i < 100; i++) {
      records = (await audit(admins.get(target)!, `action=login.failed&since=${started}`)).records.filter(
        (r) => String(r.actor).startsWith("spray-"),
      );
      if (records.length >= 5) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(records.length >= 5, JSON.stringify(records));
    for (const r of records) assert.equal(r.address, "127.0.0.1", JSON.stringify(r));
  });

  test("the realm ignores a spoofed Host and X-Forwarded-Host; the front door's is honoured", async () => {
    for (const r of mesh.regions.values()) {
      const url = new URL(r.registry);
      const res = await rawGet(`${r.registry}/v2/`, {
        host: "evil.example",
        "x-forwarded-host": "evil2.example",
        "x-forwarded-proto": "https",
      });
      assert.equal(res.status, 401);
      assert.equal(realm(res.headers), `http://${url.host}/auth/token`);
    }
    // The front door is a trusted proxy that proves itself: the realm is the address the client used.
    const res = await rawGet(`${mesh.frontDoor}/v2/`, { host: "registry.example:8443" });
    assert.equal(res.status, 401);
    assert.equal(realm(res.headers), "http://registry.example:8443/auth/token");
  });
});
