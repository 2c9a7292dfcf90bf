/**
 * Password hashes (issue 6, "Users with passwords hashed by a real KDF"):
 * scrypt from node:crypto, no native dependency. A hash is self-describing,
 *
 *   scrypt$<log2 N>$<r>$<p>$<salt, base64url>$<key, base64url>
 *
 * so the cost can be raised later and old hashes still verify (and
 * `needsRehash` says which to upgrade at the next successful login).
 * Verification compares in constant time, and a malformed stored hash
 * verifies nothing rather than throwing.
 *
 * Cost: N = 2^15, r = 8, p = 1 (32 MiB, about 50–100 ms on these machines):
 * OWASP's scrypt floor is N = 2^17 at 128 MiB for offline attack
 * resistance; 2^15 is the lowest it lists, chosen because every login and
 * every basic-auth request pays it (issue 6 caches verified credentials for
 * that reason). Tests pass a lower cost.
 *
 * Where the work runs (issue 10, finding 3): scrypt runs on libuv's thread
 * pool, the same four threads that serve file reads and the level view. A
 * burst of logins once filled all four and an unrelated `tags/list` waited
 * 4.7 s behind them. So every derivation goes through one queue per process
 * (`KDF_QUEUE`): at most KDF_CONCURRENCY run at once, leaving the other
 * threads to I/O, and at most KDF_BACKLOG wait; past that a check is refused
 * at once with TooManyLoginsError (429, Retry-After 1) instead of queueing
 * without bound. Callers limit per user and address first
 * (./login-limiter.ts), so the backlog fills only under a spread-out flood.
 *
 * `verifyUnknown` runs the same derivation against a dummy hash for a name
 * that does not exist, so whether a user exists cannot be told by how long
 * a wrong password takes (81-117 ms against 1.5-2 ms before).
 */
import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import PQueue from "p-queue";
import { Counter, Gauge, type Registry as MetricsRegistry } from "prom-client";
import { TooManyLoginsError } from "../../protocol/errors.js";

export interface ScryptCost {
  log2N: number;
  r: number;
  p: number;
}

export const DEFAULT_COST: Readonly<ScryptCost> = Object.freeze({ log2N: 15, r: 8, p: 1 });
/** The cost robot secrets are hashed with (32 random bytes need no slow KDF; node/http/identity-routes.ts). */
export const ROBOT_SECRET_COST: Readonly<ScryptCost> = Object.freeze({ log2N: 10, r: 8, p: 1 });
const KEY_BYTES = 32;
const SALT_BYTES = 16;

/** Derivations running at once: one of libuv's four pool threads; the rest stay free for I/O. */
export const KDF_CONCURRENCY = 1;
/** Derivations waiting; more are refused (429). About 3-6 s of work at the default cost. */
export const KDF_BACKLOG = 64;

/**
 * A bounded FIFO of asynchronous jobs: `run` starts a job when fewer than
 * `concurrency` run, queues it when fewer than `backlog` wait, and refuses
 * it (undefined) otherwise. `runs` counts jobs started (a metric, and how
 * tests see that a check ran). The queue itself is p-queue's; p-queue has
 * no bound on its backlog, so the refusal when full is this wrapper's.
 */
export class BoundedQueue {
  readonly #queue: PQueue;
  runs = 0;
  refused = 0;

  constructor(
    readonly concurrency: number,
    readonly backlog: number,
  ) {
    this.#queue = new PQueue({ concurrency });
  }

  get running(): number {
    return this.#queue.pending;
  }

  get waiting(): number {
    return this.#queue.size;
  }

  /** `job`'s result, or undefined (without running it) when the backlog is full. */
  run<T>(job: () => Promise<T>): Promise<T> | undefined {
    if (this.#queue.pending >= this.concurrency && this.#queue.size >= this.backlog) {
      this.refused++;
      return undefined;
    }
    return this.#queue.add(() => {
      this.runs++;
      return job();
    });
  }
}

/** The process's one KDF queue (see the header). */
export const KDF_QUEUE = new BoundedQueue(KDF_CONCURRENCY, KDF_BACKLOG);

/**
 * `meridian_kdf_runs_total` (password derivations started: logins checked,
 * unknown names included, and hashes made), `meridian_kdf_refused_total`
 * (refused with the backlog full) and `meridian_kdf_waiting_derivations`.
 */
export function registerKdfMetrics(registry: MetricsRegistry): void {
  new Counter({
    name: "meridian_kdf_runs_total",
    help: "Password derivations (scrypt) started: every password checked, unknown names included, and every hash made",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(KDF_QUEUE.runs);
    },
  });
  new Counter({
    name: "meridian_kdf_refused_total",
    help: "Password checks refused (429) because the KDF queue's backlog was full",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(KDF_QUEUE.refused);
    },
  });
  new Gauge({
    name: "meridian_kdf_waiting_derivations",
    help: "Password derivations waiting for the KDF queue",
    registers: [registry],
    collect() {
      this.set(KDF_QUEUE.waiting);
    },
  });
}

function derive(password: string, salt: Buffer, cost: ScryptCost): Promise<Buffer> {
  const queued = KDF_QUEUE.run(() => deriveNow(password, salt, cost));
  if (queued === undefined)
    return Promise.reject(
      new TooManyLoginsError("too many password checks in progress; try again shortly", {
        detail: { retryAfterSeconds: 1 },
      }),
    );
  return queued;
}

function deriveNow(password: string, salt: Buffer, cost: ScryptCost): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const N = 2 ** cost.log2N;
    scrypt(
      password.normalize("NFC"),
      salt,
      KEY_BYTES,
      { N, r: cost.r, p: cost.p, maxmem: 256 * N * cost.r },
      (err, key) => (err ? reject(err) : resolve(key)),
    );
  });
}

/** A new hash of `password` with a fresh random salt. */
export async function hashPassword(password: string, cost: ScryptCost = DEFAULT_COST): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const key = await derive(password, salt, cost);
  return ["scrypt", cost.log2N, cost.r, cost.p, salt.toString("base64url"), key.toString("base64url")].join(
    "$",
  );
}

function parse(stored: string): { cost: ScryptCost; salt: Buffer; key: Buffer } | undefined {
  const parts = stored.split("$");
  if (parts.length !== 6 || parts[0] !== "scrypt") return undefined;
  const [log2N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  const ok = (n: number, lo: number, hi: number) => Number.isInteger(n) && n >= lo && n <= hi;
  if (!ok(log2N, 1, 22) || !ok(r, 1, 32) || !ok(p, 1, 16)) return undefined;
  const salt = Buffer.from(parts[4]!, "base64url");
  const key = Buffer.from(parts[5]!, "base64url");
  if (salt.length < 8 || key.length !== KEY_BYTES) return undefined;
  return { cost: { log2N, r, p }, salt, key };
}

/** Whether `password` matches `stored`; false (never an error) for a malformed hash. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parsed = parse(stored);
  if (parsed === undefined) return false;
  const key = await derive(password, parsed.salt, parsed.cost);
  return timingSafeEqual(key, parsed.key);
}

const dummies = new Map<string, string>();

/**
 * Spend what checking `password` against a hash of `cost` would, and answer
 * false: the check for a name that does not exist (see the header). The
 * dummy hash is random per process and cost; nothing can match it.
 */
export async function verifyUnknown(password: string, cost: ScryptCost = DEFAULT_COST): Promise<false> {
  const key = `${cost.log2N}$${cost.r}$${cost.p}`;
  let dummy = dummies.get(key);
  if (dummy === undefined) {
    dummy = [
      "scrypt",
      key,
      randomBytes(SALT_BYTES).toString("base64url"),
      randomBytes(KEY_BYTES).toString("base64url"),
    ].join("$");
    dummies.set(key, dummy);
  }
  await verifyPassword(password, dummy);
  return false;
}

/** Whether a stored hash is weaker than `cost` (to rehash after the next good login). */
export function needsRehash(stored: string, cost: ScryptCost = DEFAULT_COST): boolean {
  const parsed = parse(stored);
  if (parsed === undefined) return true;
  return parsed.cost.log2N < cost.log2N || parsed.cost.r < cost.r || parsed.cost.p < cost.p;
}
