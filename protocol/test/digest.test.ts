import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, test } from "node:test";
import {
  algorithmOf,
  type Digest,
  digestFromHash,
  digestOf,
  encodedOf,
  isDigest,
  newHash,
  parseDigest,
} from "../digest.js";
import { DigestInvalidError, MeridianError, UnsupportedError } from "../errors.js";

const HEX64 = "a".repeat(64);
const HEX128 = "0123456789abcdef".repeat(8);
const EMPTY_SHA256 = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const EMPTY_SHA512 =
  "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e";

describe("parseDigest accepts", () => {
  const valid: [string, string][] = [
    ["sha256 of the empty string", EMPTY_SHA256],
    ["sha256 all digits", `sha256:${"0".repeat(64)}`],
    ["sha256 all hex letters", `sha256:${"f".repeat(64)}`],
    ["sha256 mixed", `sha256:${"0123456789abcdef".repeat(4)}`],
    ["sha512 of the empty string", EMPTY_SHA512],
    ["sha512 mixed", `sha512:${HEX128}`],
  ];
  for (const [name, value] of valid) {
    test(name, () => {
      assert.equal(parseDigest(value), value);
      assert.equal(isDigest(value), true);
    });
  }
});

describe("parseDigest rejects", () => {
  const invalid: [string, unknown][] = [
    ["empty string", ""],
    ["no algorithm", HEX64],
    ["no encoded part", "sha256:"],
    ["only a colon", ":"],
    ["empty algorithm", `:${HEX64}`],
    ["uppercase hex sha256", `sha256:${"A".repeat(64)}`],
    ["one uppercase hex digit", `sha256:${"a".repeat(63)}B`],
    ["uppercase hex sha512", `sha512:${HEX128.toUpperCase()}`],
    ["uppercase algorithm", `SHA256:${HEX64}`],
    ["sha256 too short (63)", `sha256:${"a".repeat(63)}`],
    ["sha256 too long (65)", `sha256:${"a".repeat(65)}`],
    ["sha256 with a sha512-length encoding", `sha256:${HEX128}`],
    ["sha512 with a sha256-length encoding", `sha512:${HEX64}`],
    ["sha512 too short (127)", `sha512:${HEX128.slice(1)}`],
    ["sha512 too long (129)", `sha512:${HEX128}0`],
    ["non-hex letters", `sha256:${"g".repeat(64)}`],
    ["unknown algorithm md5", `md5:${"a".repeat(32)}`],
    ["unknown algorithm sha1", `sha1:${"a".repeat(40)}`],
    ["unknown algorithm sha384", `sha384:${"a".repeat(96)}`],
    ["unknown algorithm with a sha256-length encoding", `blake3:${HEX64}`],
    ["registered-looking compound algorithm", `sha256+b64u:${HEX64}`],
    ["whitespace before", ` sha256:${HEX64}`],
    ["whitespace after", `sha256:${HEX64} `],
    ["trailing newline", `sha256:${HEX64}\n`],
    ["two colons", `sha256:sha256:${HEX64}`],
    ["path traversal in the encoding", `sha256:../../${"a".repeat(58)}`],
    ["slash in the encoding", `sha256:${"a".repeat(32)}/${"a".repeat(31)}`],
    ["junk", "not a digest"],
    ["very long", `sha256:${"a".repeat(10_000)}`],
    ["not a string: number", 42],
    ["not a string: undefined", undefined],
    ["not a string: null", null],
  ];
  for (const [name, value] of invalid) {
    test(name, () => {
      assert.throws(() => parseDigest(value as string), DigestInvalidError);
      assert.equal(isDigest(value as string), false);
    });
  }

  test("errors are MeridianErrors with the DIGEST_INVALID code", () => {
    try {
      parseDigest("junk");
      assert.fail("parseDigest accepted junk");
    } catch (err) {
      assert.ok(err instanceof MeridianError);
      assert.equal(err.code, "DIGEST_INVALID");
    }
  });
});

describe("digest helpers", () => {
  test("digestOf sha256 matches node:crypto and round-trips through parseDigest", () => {
    for (const input of ["", "hello", "\u00e9t\u00e9", "x".repeat(100_000)]) {
      const d = digestOf(input);
      assert.equal(d, `sha256:${createHash("sha256").update(input).digest("hex")}`);
      assert.equal(parseDigest(d), d);
      assert.equal(algorithmOf(d), "sha256");
      assert.equal(encodedOf(d), createHash("sha256").update(input).digest("hex"));
    }
  });

  test("digestOf of the empty input is the well-known digest", () => {
    assert.equal(digestOf(new Uint8Array(0)), EMPTY_SHA256);
    assert.equal(digestOf("", "sha512"), EMPTY_SHA512);
  });

  test("digestOf sha512 round-trips through parseDigest", () => {
    const d = digestOf(Buffer.from([0, 1, 2, 255]), "sha512");
    assert.equal(parseDigest(d), d);
    assert.equal(algorithmOf(d), "sha512");
    assert.equal(encodedOf(d).length, 128);
  });

  test("digestOf agrees for a string and its UTF-8 bytes", () => {
    assert.equal(digestOf("caf\u00e9"), digestOf(Buffer.from("caf\u00e9", "utf8")));
  });

  test("digestOf of a Uint8Array view hashes only the view", () => {
    const whole = Buffer.from("xxhelloyy");
    const view = new Uint8Array(whole.buffer, whole.byteOffset + 2, 5);
    assert.equal(digestOf(view), digestOf("hello"));
  });

  test("different content gives different digests", () => {
    assert.notEqual(digestOf("a"), digestOf("b"));
    assert.notEqual(digestOf("a", "sha256"), digestOf("a", "sha512"));
  });

  test("digestFromHash over a streamed hash equals digestOf", () => {
    for (const algorithm of ["sha256", "sha512"] as const) {
      const hash = newHash(algorithm);
      hash.update("hel");
      hash.update("lo");
      assert.equal(digestFromHash(hash, algorithm), digestOf("hello", algorithm));
    }
  });

  test("newHash rejects an unsupported algorithm", () => {
    assert.throws(() => newHash("md5" as "sha256"), UnsupportedError);
  });

  test("algorithmOf and encodedOf split at the colon", () => {
    const d = `sha512:${HEX128}` as Digest;
    assert.equal(algorithmOf(d), "sha512");
    assert.equal(encodedOf(d), HEX128);
  });
});
