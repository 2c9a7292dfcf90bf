/**
 * Parsing of the request headers and parameters the OCI API depends on. Each
 * parser throws the domain error its malformation deserves.
 */
import {
  PaginationInvalidError,
  RangeNotSatisfiableError,
  SizeInvalidError,
  UploadRangeError,
} from "../../protocol/errors.js";
import type { ByteRange } from "../data/blob-store.js";

/** A Content-Length header, or undefined when absent. */
export function contentLength(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{1,15}$/.test(value)) throw new SizeInvalidError("invalid Content-Length");
  return Number(value);
}

/**
 * A chunk's Content-Range (`<start>-<end>`, as the OCI spec writes it; the
 * `bytes ` prefix and a `/<total>` suffix are tolerated). Malformed → 416.
 */
export function uploadContentRange(value: string | undefined): ByteRange | undefined {
  if (value === undefined) return undefined;
  const m = /^(?:bytes[ =])?(\d{1,15})-(\d{1,15})(?:\/(?:\d{1,15}|\*))?$/.exec(value.trim());
  if (m === null) throw new UploadRangeError("invalid Content-Range");
  const start = Number(m[1]);
  const end = Number(m[2]);
  if (end < start) throw new UploadRangeError("invalid Content-Range");
  return { start, end };
}

/**
 * A Range header on a blob GET (`bytes=a-b`, `bytes=a-`, `bytes=-n`) for an
 * entity of `size` bytes. One range only; anything else is answered 416.
 */
export function blobRange(value: string | undefined, size: number): ByteRange | undefined {
  if (value === undefined) return undefined;
  const m = /^bytes=(\d{0,15})-(\d{0,15})$/.exec(value.trim());
  if (m === null || (m[1] === "" && m[2] === "")) throw new RangeNotSatisfiableError("invalid Range", size);
  let start: number;
  let end: number;
  if (m[1] === "") {
    const suffix = Number(m[2]);
    if (suffix === 0) throw new RangeNotSatisfiableError("range not satisfiable", size);
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || end < start) throw new RangeNotSatisfiableError("range not satisfiable", size);
  return { start, end };
}

/** The `n` pagination parameter: a non-negative integer, capped at `max`; undefined when absent. */
export function pageSize(value: unknown, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string" || !/^\d{1,9}$/.test(value)) {
    throw new PaginationInvalidError("n must be a non-negative integer");
  }
  return Math.min(Number(value), max);
}
