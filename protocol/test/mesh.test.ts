/**
 * mesh.json parsing: one URL or a list for a region's registry nodes and
 * NATS servers, every problem reported at once, and the written form
 * (meshDocument) read back to the same mesh.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { MeshConfigError, meshDocument, natsServersOf, parseMesh, registriesOf } from "../mesh.js";

const region = (name: string, registry: unknown, nats: unknown = "nats://127.0.0.1:4222") => ({
  name,
  registry,
  nats,
  grpc: "127.0.0.1:5002",
});

test("a region's registry may be one URL or a list of its nodes", () => {
  const mesh = parseMesh({
    regions: [
      region("a", "http://127.0.0.1:5000"),
      region(
        "b",
        ["http://127.0.0.1:5010", "http://127.0.0.1:5090"],
        ["nats://127.0.0.1:5011", "nats://127.0.0.1:5016"],
      ),
    ],
    insecure: true,
  });
  const [a, b] = mesh.regions;
  assert.equal(a!.registry, "http://127.0.0.1:5000");
  assert.deepEqual(registriesOf(a!), ["http://127.0.0.1:5000"]);
  // The first node stays `registry` for every reader that wants one URL.
  assert.equal(b!.registry, "http://127.0.0.1:5010");
  assert.deepEqual(registriesOf(b!), ["http://127.0.0.1:5010", "http://127.0.0.1:5090"]);
  assert.deepEqual(natsServersOf(b!), ["nats://127.0.0.1:5011", "nats://127.0.0.1:5016"]);
  // Written back, the list form survives a round trip.
  const again = parseMesh(JSON.parse(JSON.stringify(meshDocument(mesh))));
  assert.deepEqual(again, mesh);
  assert.deepEqual((meshDocument(mesh) as { regions: { registry: unknown }[] }).regions[1]!.registry, [
    "http://127.0.0.1:5010",
    "http://127.0.0.1:5090",
  ]);
});

test("bad registry lists are refused, naming the field", () => {
  const problems = (registry: unknown) => {
    try {
      parseMesh({ regions: [region("a", registry)], insecure: true });
    } catch (err) {
      assert.ok(err instanceof MeshConfigError);
      return err.problems;
    }
    assert.fail(`accepted registry ${JSON.stringify(registry)}`);
  };
  assert.deepEqual(problems([]), ["regions[0].registry: an http(s) URL, or a non-empty list of them"]);
  assert.deepEqual(problems(["http://x:1", "ftp://y"]), [
    "regions[0].registry: an http(s) URL, or a non-empty list of them",
  ]);
  assert.deepEqual(problems(["http://x:1", "http://x:1"]), ["regions[0].registry: a URL appears twice"]);
  assert.deepEqual(problems(42), ["regions[0].registry: an http(s) URL, or a non-empty list of them"]);
});

test("every problem is listed at once", () => {
  assert.throws(
    () => parseMesh({ regions: [{ name: "A!", registry: [], nats: [], grpc: "x" }] }),
    (err: unknown) => err instanceof MeshConfigError && err.problems.length === 5,
  );
});
