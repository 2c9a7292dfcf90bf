/**
 * Which failure a copy reports when no peer could give it the blob
 * (replication/copy.ts), now that some failures are terminal for the event
 * (issue 12, item 5): a peer that is merely unreachable may hold the
 * content, so its failure wins over another peer's terminal one, whatever
 * the order the peers were asked in; a terminal failure wins over "not
 * here". The peers are stand-ins answering with the domain errors a real
 * PeerClient rebuilds from the gRPC status (protocol/test/grpc-errors.test.ts
 * and control-plane/test/peer-errors.test.ts cover that part).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { after, test } from "node:test";
import { pino } from "pino";
import { FsBlobStore } from "../../node/data/fs-blob-store.js";
import type { Digest } from "../../protocol/digest.js";
import {
  BlobNotFoundError,
  isTerminal,
  type MeridianError,
  PeerInternalError,
  PeerUnavailableError,
} from "../../protocol/errors.js";
import { cleanupStack, tempDir } from "../../testing/harness.js";
import { Copier, type CopySource } from "../copy.js";

const cleanup = cleanupStack({ after });
const DIGEST = `sha256:${"ab".repeat(32)}` as Digest;

/** A peer whose fetch of any blob fails with `err` (or that does not hold it: `err` undefined). */
function peer(region: string, err: MeridianError | undefined): CopySource {
  return {
    region,
    blobSizes: async (digests: Digest[]) => digests.map(() => (err !== undefined ? 1 : undefined)),
    fetchBlob: () => {
      const out = new PassThrough();
      // As PeerClient's stream: the error stays on it for the consumer, not an uncaught 'error'.
      out.on("error", () => undefined);
      setImmediate(() => out.destroy(err));
      return out;
    },
  } as CopySource;
}

async function copyFails(peers: CopySource[]): Promise<MeridianError> {
  const dir = tempDir(cleanup);
  const store = new FsBlobStore(join(dir, "store"), { fsync: false });
  await store.init();
  const copier = new Copier({ store, stateDir: join(dir, "state"), logger: pino({ level: "silent" }) });
  try {
    await copier.ensureBlob(DIGEST, peers, AbortSignal.timeout(10_000));
  } catch (err) {
    return err as MeridianError;
  }
  throw new Error("the copy succeeded");
}

test("an unreachable peer's failure wins over another's terminal one, in either order", async () => {
  const internal = () => peer("a", new PeerInternalError("blob: internal error"));
  const down = () => peer("b", new PeerUnavailableError("blob: peer unavailable"));
  for (const peers of [
    [internal(), down()],
    [down(), internal()],
  ]) {
    const err = await copyFails(peers);
    assert.ok(err instanceof PeerUnavailableError, String(err));
    assert.equal(isTerminal(err), false);
  }
});

test("a terminal failure wins over peers that do not hold the blob, in either order", async () => {
  const internal = () => peer("a", new PeerInternalError("blob: internal error"));
  const without = () => peer("b", undefined);
  for (const peers of [
    [internal(), without()],
    [without(), internal()],
  ]) {
    const err = await copyFails(peers);
    assert.ok(err instanceof PeerInternalError, String(err));
    assert.equal(isTerminal(err), true);
  }
  assert.ok((await copyFails([without()])) instanceof BlobNotFoundError);
});
