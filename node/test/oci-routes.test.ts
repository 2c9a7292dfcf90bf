/**
 * The OCI API's routing as route plugins (node/http/oci/, issue 12 item 6):
 * the one parser of repository names (oci/paths.ts) as a table of cases; a
 * real node for what goes through fastify's router (names with slashes and
 * long names, names the router must not decode, 405s); query schemas answering
 * the OCI code of the parameter; and the auth plugin refusing a route that
 * declares no access.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { after, before, describe, test } from "node:test";
import fastify from "fastify";
import { cleanupStack, startTestNats, startTestNode } from "../../testing/harness.js";
import { errorCode, OciClient, sha256 } from "../../testing/oci-client.js";
import { authPlugin } from "../http/auth-plugin.js";
import { rewriteOciUrl } from "../http/oci/paths.js";

const rewrite = (url: string) => rewriteOciUrl({ url } as IncomingMessage);

describe("oci/paths.ts: an OCI path to its route's URL", () => {
  const cases: Array<[string, string]> = [
    ["/v2", "/v2/"],
    ["/v2/", "/v2/"],
    ["/v2/_catalog?n=2", "/v2/_catalog?n=2"],
    ["/v2/a/b/blobs/uploads", "/v2/a%2Fb/blobs/uploads/"],
    ["/v2/a/b/blobs/uploads/?digest=sha256:x", "/v2/a%2Fb/blobs/uploads/?digest=sha256:x"],
    ["/v2/a/blobs/uploads/abc", "/v2/a/blobs/uploads/abc"],
    // A repository called `x/blobs` (upload shapes first, as the API always matched them).
    ["/v2/x/blobs/blobs/sha256:1", "/v2/x%2Fblobs/blobs/sha256:1"],
    ["/v2/x/blobs/blobs/uploads/id", "/v2/x%2Fblobs/blobs/uploads/id"],
    ["/v2/a/b/c/manifests/latest", "/v2/a%2Fb%2Fc/manifests/latest"],
    ["/v2/a/tags/list?n=1&last=x", "/v2/a/tags/list?n=1&last=x"],
    ["/v2/a/referrers/sha256:1?artifactType=t", "/v2/a/referrers/sha256:1?artifactType=t"],
    // What the client escaped stays escaped: the router's decoding gives back the raw text.
    ["/v2/a%2Fb/tags/list", "/v2/a%252Fb/tags/list"],
    ["/v2/a/manifests/sha256%3A1", "/v2/a/manifests/sha256%253A1"],
    // No shape, or not the OCI API: unchanged.
    ["/v2/foo/bar/nothing", "/v2/foo/bar/nothing"],
    ["/admin/rules", "/admin/rules"],
    ["/metrics", "/metrics"],
  ];
  for (const [url, expected] of cases)
    test(`${url} → ${expected}`, () => {
      assert.equal(rewrite(url), expected);
    });
});

describe("through a node", () => {
  let c: OciClient;
  const cleanup = cleanupStack({ after });
  before(async () => {
    const nats = await startTestNats(cleanup);
    const node = await startTestNode(cleanup, { nats: nats.url });
    c = new OciClient(node.url);
  });

  async function expectError(res: Response, status: number, code: string): Promise<void> {
    assert.equal(res.status, status, `status of ${res.url}`);
    assert.equal(await errorCode(res), code);
  }

  test("a long name with many slashes reaches its routes (longer than the router's default parameter)", async () => {
    const name = `deep/${Array.from({ length: 30 }, (_, i) => `p${i}`).join("/")}/blobs/img`;
    assert.ok(name.length > 100 && name.length <= 255);
    const bytes = randomBytes(300);
    const digest = sha256(bytes);
    const put = await c.fetch(`/v2/${name}/blobs/uploads/?digest=${digest}`, { method: "POST", body: bytes });
    assert.equal(put.status, 201);
    assert.equal(put.headers.get("location"), `/v2/${name}/blobs/${digest}`);
    const head = await c.fetch(`/v2/${name}/blobs/${digest}`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-length"), "300");
    const tags = await c.fetch(`/v2/${name}/tags/list`);
    assert.equal(tags.status, 200);
    assert.deepEqual(await tags.json(), { name, tags: [] });
  });

  test("an escaped slash is not a slash: the name stays invalid", async () => {
    await expectError(await c.fetch("/v2/deep%2Fp0/tags/list"), 400, "NAME_INVALID");
  });

  test("a method a route lacks is 405 with Allow, on every route", async () => {
    const cases: Array<[string, string, string]> = [
      ["/v2/", "POST", "GET, HEAD"],
      ["/v2/_catalog", "PUT", "GET"],
      ["/v2/a/blobs/uploads/", "GET", "POST"],
      ["/v2/a/blobs/uploads/x", "POST", "GET, PATCH, PUT, DELETE"],
      ["/v2/a/blobs/sha256:1", "PUT", "GET, HEAD, DELETE"],
      ["/v2/a/manifests/latest", "POST", "GET, HEAD, PUT, DELETE"],
      ["/v2/a/referrers/sha256:1", "DELETE", "GET"],
    ];
    for (const [path, method, allow] of cases) {
      const res = await c.fetch(path, { method });
      assert.equal(res.headers.get("allow"), allow, `${method} ${path}`);
      await expectError(res, 405, "UNSUPPORTED");
    }
  });

  test("query parameters failing their schema answer the parameter's OCI error", async () => {
    await expectError(await c.fetch("/v2/_catalog?n=abc"), 400, "PAGINATION_NUMBER_INVALID");
    await expectError(await c.fetch("/v2/_catalog?n=1&n=2"), 400, "PAGINATION_NUMBER_INVALID");
    await expectError(await c.fetch("/v2/_catalog?last=a&last=b"), 400, "NAME_INVALID");
    await expectError(await c.fetch("/v2/a/tags/list?n=-1"), 400, "PAGINATION_NUMBER_INVALID");
    await expectError(await c.fetch("/v2/a/tags/list?last=a&last=b"), 400, "MANIFEST_INVALID");
    const start = await c.fetch("/v2/q/blobs/uploads/", { method: "POST" });
    assert.equal(start.status, 202);
    const location = start.headers.get("location")!;
    await expectError(await c.fetch(location, { method: "PUT" }), 400, "DIGEST_INVALID");
    await expectError(
      await c.fetch(`${location}?digest=a&digest=b`, { method: "PUT" }),
      400,
      "DIGEST_INVALID",
    );
    await expectError(
      await c.fetch("/v2/q/blobs/uploads/?mount=a&mount=b&from=x", { method: "POST" }),
      400,
      "DIGEST_INVALID",
    );
    // One artifact type per request: several are refused, not half-applied.
    await expectError(
      await c.fetch(`/v2/q/referrers/${sha256(Buffer.from("x"))}?artifactType=a&artifactType=b`),
      400,
      "UNSUPPORTED",
    );
  });
});

describe("auth-plugin.ts", () => {
  test("a route that declares no access is refused when registered", async () => {
    const app = fastify();
    await assert.rejects(async () => {
      await app.register(async (scope) => {
        await scope.register(authPlugin, {});
        scope.get("/open", { config: { ociAccess: "none" } as object }, async () => "ok");
        scope.get("/forgotten", async () => "ok");
      });
      await app.ready();
    }, /GET \/forgotten declares no access/);
  });

  test("routes outside its scope are not its concern", async () => {
    const app = fastify();
    await app.register(async (scope) => {
      await scope.register(authPlugin, {});
      scope.get("/declared", { config: { ociAccess: "pull" } as object }, async () => "ok");
    });
    app.get("/elsewhere", async () => "ok");
    await app.ready();
    assert.equal((await app.inject("/elsewhere")).body, "ok");
    await app.close();
  });
});
