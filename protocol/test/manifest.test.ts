import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { digestOf } from "../digest.js";
import { ManifestInvalidError } from "../errors.js";
import { normalizeContentType, parseManifest } from "../manifest.js";
import { MediaType } from "../media-types.js";

const CONFIG = digestOf("config");
const LAYER1 = digestOf("layer1");
const LAYER2 = digestOf("layer2");
const CHILD1 = digestOf("child1");
const CHILD2 = digestOf("child2");
const SUBJECT = digestOf("subject");

const OCI_CONFIG = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip";

type Doc = Record<string, unknown>;

const bytes = (doc: unknown) => Buffer.from(JSON.stringify(doc));

function ociManifest(extra: Doc = {}): Doc {
  return {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: { mediaType: OCI_CONFIG, digest: CONFIG, size: 6 },
    layers: [
      { mediaType: OCI_LAYER, digest: LAYER1, size: 6 },
      { mediaType: OCI_LAYER, digest: LAYER2, size: 6 },
    ],
    ...extra,
  };
}

function ociIndex(extra: Doc = {}): Doc {
  return {
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: [
      {
        mediaType: MediaType.OciManifest,
        digest: CHILD1,
        size: 100,
        platform: { os: "linux", architecture: "amd64" },
      },
      {
        mediaType: MediaType.OciManifest,
        digest: CHILD2,
        size: 200,
        platform: { os: "linux", architecture: "arm64" },
      },
    ],
    ...extra,
  };
}

function dockerManifest(extra: Doc = {}): Doc {
  return {
    schemaVersion: 2,
    mediaType: MediaType.DockerManifest,
    config: { mediaType: DOCKER_CONFIG, digest: CONFIG, size: 6 },
    layers: [{ mediaType: DOCKER_LAYER, digest: LAYER1, size: 6 }],
    ...extra,
  };
}

function dockerList(extra: Doc = {}): Doc {
  return {
    schemaVersion: 2,
    mediaType: MediaType.DockerManifestList,
    manifests: [
      {
        mediaType: MediaType.DockerManifest,
        digest: CHILD1,
        size: 100,
        platform: { os: "linux", architecture: "amd64" },
      },
    ],
    ...extra,
  };
}

/** A document with `key` removed. */
function without(doc: Doc, key: string): Doc {
  const out = { ...doc };
  delete out[key];
  return out;
}

describe("parseManifest accepts", () => {
  const cases: {
    name: string;
    doc: unknown;
    contentType: string | undefined;
    mediaType: string;
    blobs: string[];
    manifests: string[];
    artifactType?: string;
  }[] = [
    {
      name: "OCI image manifest",
      doc: ociManifest(),
      contentType: MediaType.OciManifest,
      mediaType: MediaType.OciManifest,
      blobs: [CONFIG, LAYER1, LAYER2],
      manifests: [],
      artifactType: OCI_CONFIG,
    },
    {
      name: "OCI image manifest with Content-Type parameters and odd case",
      doc: ociManifest(),
      contentType: "Application/VND.oci.image.manifest.v1+JSON; charset=utf-8",
      mediaType: MediaType.OciManifest,
      blobs: [CONFIG, LAYER1, LAYER2],
      manifests: [],
      artifactType: OCI_CONFIG,
    },
    {
      name: "OCI image manifest without mediaType, typed by Content-Type",
      doc: without(ociManifest(), "mediaType"),
      contentType: MediaType.OciManifest,
      mediaType: MediaType.OciManifest,
      blobs: [CONFIG, LAYER1, LAYER2],
      manifests: [],
      artifactType: OCI_CONFIG,
    },
    {
      name: "OCI image manifest without Content-Type, typed by mediaType",
      doc: ociManifest(),
      contentType: undefined,
      mediaType: MediaType.OciManifest,
      blobs: [CONFIG, LAYER1, LAYER2],
      manifests: [],
      artifactType: OCI_CONFIG,
    },
    {
      name: "OCI image manifest sent as application/json",
      doc: ociManifest(),
      contentType: "application/json",
      mediaType: MediaType.OciManifest,
      blobs: [CONFIG, LAYER1, LAYER2],
      manifests: [],
      artifactType: OCI_CONFIG,
    },
    {
      name: "untyped image manifest defaults to OCI manifest",
      doc: without(ociManifest(), "mediaType"),
      contentType: undefined,
      mediaType: MediaType.OciManifest,
      blobs: [CONFIG, LAYER1, LAYER2],
      manifests: [],
      artifactType: OCI_CONFIG,
    },
    {
      name: "OCI image manifest with no layers (an artifact)",
      doc: ociManifest({ layers: [], artifactType: "application/vnd.example.sbom" }),
      contentType: MediaType.OciManifest,
      mediaType: MediaType.OciManifest,
      blobs: [CONFIG],
      manifests: [],
      artifactType: "application/vnd.example.sbom",
    },
    {
      name: "OCI index",
      doc: ociIndex(),
      contentType: MediaType.OciIndex,
      mediaType: MediaType.OciIndex,
      blobs: [],
      manifests: [CHILD1, CHILD2],
    },
    {
      name: "untyped index defaults to OCI index",
      doc: without(ociIndex(), "mediaType"),
      contentType: undefined,
      mediaType: MediaType.OciIndex,
      blobs: [],
      manifests: [CHILD1, CHILD2],
    },
    {
      name: "OCI index with an artifactType",
      doc: ociIndex({ artifactType: "application/vnd.example.bundle" }),
      contentType: MediaType.OciIndex,
      mediaType: MediaType.OciIndex,
      blobs: [],
      manifests: [CHILD1, CHILD2],
      artifactType: "application/vnd.example.bundle",
    },
    {
      name: "empty OCI index",
      doc: ociIndex({ manifests: [] }),
      contentType: MediaType.OciIndex,
      mediaType: MediaType.OciIndex,
      blobs: [],
      manifests: [],
    },
    {
      name: "Docker schema2 manifest",
      doc: dockerManifest(),
      contentType: MediaType.DockerManifest,
      mediaType: MediaType.DockerManifest,
      blobs: [CONFIG, LAYER1],
      manifests: [],
      artifactType: DOCKER_CONFIG,
    },
    {
      name: "Docker schema2 manifest sent as application/octet-stream",
      doc: dockerManifest(),
      contentType: "application/octet-stream",
      mediaType: MediaType.DockerManifest,
      blobs: [CONFIG, LAYER1],
      manifests: [],
      artifactType: DOCKER_CONFIG,
    },
    {
      name: "Docker manifest list",
      doc: dockerList(),
      contentType: MediaType.DockerManifestList,
      mediaType: MediaType.DockerManifestList,
      blobs: [],
      manifests: [CHILD1],
    },
    {
      name: "Docker manifest list without Content-Type",
      doc: dockerList(),
      contentType: undefined,
      mediaType: MediaType.DockerManifestList,
      blobs: [],
      manifests: [CHILD1],
    },
    {
      name: "a blank Content-Type counts as absent",
      doc: dockerList(),
      contentType: "  ",
      mediaType: MediaType.DockerManifestList,
      blobs: [],
      manifests: [CHILD1],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const parsed = parseManifest(bytes(c.doc), c.contentType);
      assert.equal(parsed.mediaType, c.mediaType);
      assert.deepEqual(parsed.blobs, c.blobs);
      assert.deepEqual(parsed.manifests, c.manifests);
      assert.equal(parsed.artifactType, c.artifactType);
      assert.equal(parsed.subject, undefined);
    });
  }

  test("bytes given as a view into a larger buffer", () => {
    const inner = bytes(ociManifest());
    const outer = Buffer.concat([Buffer.from("garbage{"), inner, Buffer.from("}garbage")]);
    const view = new Uint8Array(outer.buffer, outer.byteOffset + 8, inner.byteLength);
    assert.deepEqual(parseManifest(view, MediaType.OciManifest).blobs, [CONFIG, LAYER1, LAYER2]);
  });

  test("whitespace and key order do not matter", () => {
    const text = `{\n  "layers": [],\n  "config": {"size": 6, "digest": "${CONFIG}", "mediaType": "${OCI_CONFIG}"},\n  "schemaVersion": 2\n}\n`;
    const parsed = parseManifest(Buffer.from(text), MediaType.OciManifest);
    assert.deepEqual(parsed.blobs, [CONFIG]);
  });
});

describe("parseManifest subject, artifactType and annotations", () => {
  test("subject of an image manifest", () => {
    const doc = ociManifest({
      subject: { mediaType: MediaType.OciManifest, digest: SUBJECT, size: 123 },
    });
    const parsed = parseManifest(bytes(doc), MediaType.OciManifest);
    assert.equal(parsed.subject, SUBJECT);
    assert.ok(!parsed.blobs.includes(SUBJECT), "the subject is not a required blob");
  });

  test("subject of an index", () => {
    const doc = ociIndex({ subject: { mediaType: MediaType.OciIndex, digest: SUBJECT, size: 7 } });
    const parsed = parseManifest(bytes(doc), MediaType.OciIndex);
    assert.equal(parsed.subject, SUBJECT);
    assert.ok(!parsed.manifests.includes(SUBJECT));
  });

  test("explicit artifactType wins over config.mediaType", () => {
    const doc = ociManifest({ artifactType: "application/vnd.example.sig" });
    assert.equal(parseManifest(bytes(doc), undefined).artifactType, "application/vnd.example.sig");
  });

  test("artifactType falls back to config.mediaType (the empty config of an artifact)", () => {
    const doc = ociManifest({
      config: { mediaType: MediaType.OciEmpty, digest: CONFIG, size: 2 },
    });
    assert.equal(parseManifest(bytes(doc), undefined).artifactType, MediaType.OciEmpty);
  });

  test("an index without artifactType has none (no config to fall back to)", () => {
    assert.equal(parseManifest(bytes(ociIndex()), undefined).artifactType, undefined);
  });

  test("annotations are returned", () => {
    const annotations = { "org.opencontainers.image.created": "2024-01-01T00:00:00Z", a: "" };
    const parsed = parseManifest(bytes(ociManifest({ annotations })), undefined);
    assert.deepEqual(parsed.annotations, annotations);
  });

  test("no annotations gives undefined", () => {
    assert.equal(parseManifest(bytes(ociManifest()), undefined).annotations, undefined);
  });
});

describe("parseManifest rejects", () => {
  const badDescriptors: [string, unknown][] = [
    ["missing digest", { mediaType: OCI_LAYER, size: 1 }],
    ["digest not a string", { mediaType: OCI_LAYER, digest: 12, size: 1 }],
    ["malformed digest", { mediaType: OCI_LAYER, digest: "sha256:xyz", size: 1 }],
    ["uppercase digest", { mediaType: OCI_LAYER, digest: LAYER1.toUpperCase(), size: 1 }],
    ["unknown digest algorithm", { mediaType: OCI_LAYER, digest: `md5:${"a".repeat(32)}`, size: 1 }],
    ["negative size", { mediaType: OCI_LAYER, digest: LAYER1, size: -1 }],
    ["float size", { mediaType: OCI_LAYER, digest: LAYER1, size: 1.5 }],
    ["string size", { mediaType: OCI_LAYER, digest: LAYER1, size: "1" }],
    ["missing size", { mediaType: OCI_LAYER, digest: LAYER1 }],
    ["size beyond 2^53", { mediaType: OCI_LAYER, digest: LAYER1, size: 2 ** 53 }],
    ["null size", { mediaType: OCI_LAYER, digest: LAYER1, size: null }],
    ["missing mediaType", { digest: LAYER1, size: 1 }],
    ["empty mediaType", { mediaType: "", digest: LAYER1, size: 1 }],
    ["numeric mediaType", { mediaType: 5, digest: LAYER1, size: 1 }],
    ["artifactType not a string", { mediaType: OCI_LAYER, digest: LAYER1, size: 1, artifactType: 3 }],
    ["annotations not a map", { mediaType: OCI_LAYER, digest: LAYER1, size: 1, annotations: ["a"] }],
    [
      "annotation value not a string",
      { mediaType: OCI_LAYER, digest: LAYER1, size: 1, annotations: { a: 1 } },
    ],
    ["a string instead of an object", LAYER1],
    ["null", null],
    ["an array", [LAYER1]],
  ];

  const cases: [string, unknown, string | undefined][] = [
    ["schemaVersion 1", ociManifest({ schemaVersion: 1 }), MediaType.OciManifest],
    ["schemaVersion 3", ociManifest({ schemaVersion: 3 }), MediaType.OciManifest],
    ["schemaVersion as a string", ociManifest({ schemaVersion: "2" }), MediaType.OciManifest],
    ["schemaVersion missing", without(ociManifest(), "schemaVersion"), MediaType.OciManifest],
    ["Content-Type OCI manifest, mediaType Docker manifest", dockerManifest(), MediaType.OciManifest],
    ["Content-Type OCI index, mediaType OCI manifest", ociManifest(), MediaType.OciIndex],
    ["Content-Type OCI manifest, mediaType OCI index", ociIndex(), MediaType.OciManifest],
    ["Content-Type Docker list, mediaType OCI index", ociIndex(), MediaType.DockerManifestList],
    ["Content-Type unknown type", ociManifest(), "application/vnd.example+json"],
    ["Content-Type text/plain", ociManifest(), "text/plain"],
    ["schema1 Content-Type", ociManifest(), "application/vnd.docker.distribution.manifest.v1+prettyjws"],
    [
      "declared mediaType is not a manifest type",
      ociManifest({ mediaType: "application/vnd.example+json" }),
      undefined,
    ],
    ["declared mediaType is not a string", ociManifest({ mediaType: 7 }), undefined],
    ["Content-Type index but body has no manifests", without(ociManifest(), "mediaType"), MediaType.OciIndex],
    ["missing config", without(ociManifest(), "config"), MediaType.OciManifest],
    ["config is null", ociManifest({ config: null }), MediaType.OciManifest],
    ["missing layers", without(ociManifest(), "layers"), MediaType.OciManifest],
    ["layers not an array", ociManifest({ layers: {} }), MediaType.OciManifest],
    ["Docker manifest missing layers", without(dockerManifest(), "layers"), MediaType.DockerManifest],
    ["Docker manifest missing config", without(dockerManifest(), "config"), MediaType.DockerManifest],
    ["index missing manifests", without(ociIndex(), "manifests"), MediaType.OciIndex],
    ["index manifests not an array", ociIndex({ manifests: {} }), MediaType.OciIndex],
    ["Docker list missing manifests", without(dockerList(), "manifests"), MediaType.DockerManifestList],
    ["image manifest carrying manifests", ociManifest({ manifests: [] }), MediaType.OciManifest],
    ["artifactType empty", ociManifest({ artifactType: "" }), MediaType.OciManifest],
    ["artifactType not a string", ociManifest({ artifactType: 1 }), MediaType.OciManifest],
    ["index artifactType not a string", ociIndex({ artifactType: {} }), MediaType.OciIndex],
    ["annotations an array", ociManifest({ annotations: [] }), MediaType.OciManifest],
    ["annotations a string", ociManifest({ annotations: "x" }), MediaType.OciManifest],
    ["annotation value a number", ociManifest({ annotations: { a: 1 } }), MediaType.OciManifest],
    ["subject not a descriptor", ociManifest({ subject: SUBJECT }), MediaType.OciManifest],
    [
      "subject with a bad digest",
      ociManifest({ subject: { mediaType: MediaType.OciManifest, digest: "sha256:0", size: 1 } }),
      MediaType.OciManifest,
    ],
    ["a JSON array", [ociManifest()], MediaType.OciManifest],
    ["a JSON string", "manifest", MediaType.OciManifest],
    ["a JSON number", 2, MediaType.OciManifest],
    ["JSON null", null, MediaType.OciManifest],
  ];
  for (const [name, d] of badDescriptors) {
    cases.push([`config: ${name}`, ociManifest({ config: d }), MediaType.OciManifest]);
    cases.push([
      `layers[1]: ${name}`,
      ociManifest({ layers: [{ mediaType: OCI_LAYER, digest: LAYER1, size: 1 }, d] }),
      MediaType.OciManifest,
    ]);
    cases.push([`index manifests[0]: ${name}`, ociIndex({ manifests: [d] }), MediaType.OciIndex]);
    cases.push([`subject: ${name}`, ociManifest({ subject: d }), MediaType.OciManifest]);
  }
  for (const [name, doc, contentType] of cases) {
    test(name, () => {
      assert.throws(() => parseManifest(bytes(doc), contentType), ManifestInvalidError);
    });
  }

  const notJson: [string, Buffer][] = [
    ["empty body", Buffer.alloc(0)],
    ["truncated JSON", bytes(ociManifest()).subarray(0, 40)],
    ["trailing garbage", Buffer.concat([bytes(ociManifest()), Buffer.from("x")])],
    ["plain text", Buffer.from("hello")],
    ["binary", Buffer.from([0xff, 0xfe, 0x00, 0x01])],
    ["a tar header", Buffer.from("ustar\u0000".padEnd(512, "\u0000"))],
  ];
  for (const [name, body] of notJson) {
    test(`not JSON: ${name}`, () => {
      assert.throws(
        () => parseManifest(body, MediaType.OciManifest),
        (err: unknown) => {
          assert.ok(err instanceof ManifestInvalidError);
          assert.match(err.message, /JSON/);
          return true;
        },
      );
    });
  }

  test("the error names the offending field", () => {
    const doc = ociManifest({
      layers: [
        { mediaType: OCI_LAYER, digest: LAYER1, size: 1 },
        { mediaType: OCI_LAYER, digest: LAYER2, size: -5 },
      ],
    });
    assert.throws(() => parseManifest(bytes(doc), undefined), /layers\[1\]\.size/);
  });

  test("a bad digest keeps its cause", () => {
    const doc = ociManifest({ config: { mediaType: OCI_CONFIG, digest: "sha256:nope", size: 1 } });
    try {
      parseManifest(bytes(doc), undefined);
      assert.fail("accepted");
    } catch (err) {
      assert.ok(err instanceof ManifestInvalidError);
      assert.match(err.message, /config\.digest/);
      assert.ok(err.cause instanceof Error);
    }
  });
});

describe("normalizeContentType", () => {
  const cases: [string | undefined, string | undefined][] = [
    [undefined, undefined],
    ["", undefined],
    ["   ", undefined],
    [";charset=utf-8", undefined],
    ["application/json", "application/json"],
    ["Application/JSON", "application/json"],
    ["  application/json  ", "application/json"],
    ["application/json; charset=utf-8", "application/json"],
    [`${MediaType.OciManifest};a=b;c=d`, MediaType.OciManifest],
  ];
  for (const [input, expected] of cases) {
    test(`${JSON.stringify(input)} -> ${JSON.stringify(expected)}`, () => {
      assert.equal(normalizeContentType(input), expected);
    });
  }
});

describe("index platforms", () => {
  test("each child's platform is kept as os/architecture[/variant]", () => {
    const a = `sha256:${"a".repeat(64)}`;
    const b = `sha256:${"b".repeat(64)}`;
    const c = `sha256:${"c".repeat(64)}`;
    const index = {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [
        {
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          digest: a,
          size: 1,
          platform: { os: "linux", architecture: "amd64" },
        },
        {
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          digest: b,
          size: 1,
          platform: { os: "linux", architecture: "arm64", variant: "v8" },
        },
        { mediaType: "application/vnd.oci.image.manifest.v1+json", digest: c, size: 1 },
      ],
    };
    const parsed = parseManifest(Buffer.from(JSON.stringify(index)), undefined);
    assert.deepEqual(parsed.platforms, { [a]: "linux/amd64", [b]: "linux/arm64/v8" });
  });
  test("a platform that is not an object is refused", () => {
    const index = {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [
        {
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          digest: `sha256:${"a".repeat(64)}`,
          size: 1,
          platform: "linux",
        },
      ],
    };
    assert.throws(() => parseManifest(Buffer.from(JSON.stringify(index)), undefined), /platform/);
  });
});
