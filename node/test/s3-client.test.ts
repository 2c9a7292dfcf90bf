/**
 * node/data/s3-client.ts's failure mapping: what means "the S3 service is
 * not there right now" (a timeout, a refused or reset connection, a 5xx)
 * becomes StorageUnavailableError (503 UNAVAILABLE) and marks the store
 * unhealthy; a not-found, a caller's abort or a 4xx stays what it is. A
 * real client against a port nobody listens on fails at once, mapped.
 * (A frozen server: chaos/test/s3-frozen.test.ts.)
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { HeadObjectCommand } from "@aws-sdk/client-s3";
import { ociErrorFor, StorageUnavailableError } from "../../protocol/errors.js";
import { cleanupStack, freePort, tempDir } from "../../testing/harness.js";
import { S3RVER_CREDENTIALS } from "../../testing/s3.js";
import { makeS3Client, S3Health, storeError } from "../data/s3-client.js";

const named = (name: string, extra: object = {}) => Object.assign(new Error(name), { name, ...extra });

test("timeouts, refusals and 5xx become StorageUnavailableError; the rest is unchanged", () => {
  for (const err of [
    named("TimeoutError"),
    named("Error", { code: "ECONNREFUSED" }),
    named("Error", { code: "ECONNRESET" }),
    named("ServiceUnavailable", { $metadata: { httpStatusCode: 503 } }),
    named("InternalError", { $metadata: { httpStatusCode: 500 } }),
  ]) {
    const mapped = storeError(err);
    assert.ok(mapped instanceof StorageUnavailableError, `${err.name} ${JSON.stringify(err)}`);
    assert.deepEqual(ociErrorFor(mapped), { code: "UNAVAILABLE", status: 503 });
    assert.equal((mapped as Error).cause, err);
  }
  for (const err of [
    named("NotFound", { $metadata: { httpStatusCode: 404 } }),
    named("AccessDenied", { $metadata: { httpStatusCode: 403 } }),
    named("AbortError"),
    new StorageUnavailableError("already"),
  ]) {
    assert.equal(storeError(err), err, err.name);
  }
});

test("a service nobody listens on: the call fails at once as StorageUnavailableError, and the health says so", async (t) => {
  const credentialsFile = join(tempDir(cleanupStack(t)), "credentials.json");
  writeFileSync(credentialsFile, JSON.stringify(S3RVER_CREDENTIALS));
  const health = new S3Health();
  assert.deepEqual(health.status, { ok: true });
  const client = makeS3Client(
    {
      bucket: "nowhere",
      endpoint: `http://127.0.0.1:${await freePort()}`,
      forcePathStyle: true,
      maxAttempts: 1,
      connectTimeoutMs: 1_000,
      idleTimeoutMs: 1_000,
      credentialsFile,
    },
    health,
  );
  const started = Date.now();
  await assert.rejects(
    client.send(new HeadObjectCommand({ Bucket: "nowhere", Key: "k" })),
    (err: unknown) => err instanceof StorageUnavailableError && /S3/.test(err.message),
  );
  assert.ok(Date.now() - started < 5_000, "refused, not waited for");
  const status = health.status;
  assert.equal(status.ok, false);
  assert.match(status.error ?? "", /S3/);
  assert.ok(status.since !== undefined);
  health.succeeded();
  assert.deepEqual(health.status, { ok: true });
  client.destroy();
});
