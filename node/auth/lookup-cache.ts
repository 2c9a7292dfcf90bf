/**
 * The authenticator's lookup caches (./authenticator.ts): subjects and
 * projects read from the view at most every LOOKUP_CACHE_MS, a loaded
 * value kept beside its promise so the request path reads it without
 * awaiting (`peek`).
 */
import type { LRUCache } from "lru-cache";
import type { Subject } from "../../protocol/access.js";

export const LOOKUP_CACHE_MS = 1_000;
/** Entries per cache; past it the least recently used goes (lru-cache), never the whole cache at once. */
export const MAX_CACHED = 10_000;

/** A user or robot as the authenticator keeps it: its KDF hash, that hash's fingerprint, its subject. */
export interface StoredSubject {
  hash: string;
  cred: string;
  subject: Subject;
  /** Tokens issued at or before this (ms) are revoked (a tokens.revoked event); absent: none. */
  revokedBefore?: number;
}

/** Whether a token issued at `issuedAt` (ms, whole seconds) was revoked for `stored`. */
export function revoked(stored: StoredSubject, issuedAt: number): boolean {
  return stored.revokedBefore !== undefined && issuedAt <= stored.revokedBefore;
}

export interface CacheEntry<T> {
  at: number;
  value: Promise<T>;
  /** Set once `value` has resolved: what the request path reads without awaiting. */
  resolved?: { value: T };
}

export function cached<T>(
  map: LRUCache<string, CacheEntry<T>>,
  key: string,
  load: () => Promise<T>,
): Promise<T> {
  const now = Date.now();
  const hit = map.get(key);
  if (hit !== undefined && now - hit.at < LOOKUP_CACHE_MS) return hit.value;
  const entry: CacheEntry<T> = { at: now, value: load() };
  map.set(key, entry);
  entry.value.then(
    (value) => {
      entry.resolved = { value };
    },
    () => map.delete(key),
  );
  return entry.value;
}

/** A fresh, resolved cache entry's value; undefined when the slow path must load it. */
export function peek<T>(map: LRUCache<string, CacheEntry<T>>, key: string): { value: T } | undefined {
  const hit = map.get(key);
  return hit !== undefined && Date.now() - hit.at < LOOKUP_CACHE_MS ? hit.resolved : undefined;
}

/** A robot past its expiry. */
export function expired(stored: StoredSubject): boolean {
  return stored.subject.kind === "robot" && Date.now() >= stored.subject.expiresAt;
}
