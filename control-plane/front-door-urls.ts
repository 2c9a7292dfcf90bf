/**
 * The front door's handling of request targets and Location headers, pure
 * functions like ./front-door-routing.ts: a target split into path and
 * query, the `_region` parameter of an upload session's URL, and a region's
 * Location as the client should see it.
 */
import { UnsupportedError } from "../protocol/errors.js";

/** A request target split into path and query (the query without its `?`; "" when none). */
export function splitTarget(target: string): { path: string; query: string } {
  const q = target.indexOf("?");
  return q < 0 ? { path: target, query: "" } : { path: target.slice(0, q), query: target.slice(q + 1) };
}

/**
 * The `_region` parameter of a query and the query without it (other
 * parameters keep their exact bytes). Undefined region when absent.
 * UnsupportedError (400) when it is not a region name's shape or not valid
 * percent-encoding: the query is the client's, so nothing in it may make
 * the front door fail otherwise.
 */
export function takeRegionParam(query: string): { region: string | undefined; query: string } {
  let region: string | undefined;
  const kept: string[] = [];
  for (const part of query === "" ? [] : query.split("&")) {
    if (part.startsWith("_region=")) region = parseRegionParam(part.slice("_region=".length));
    else kept.push(part);
  }
  return { region, query: kept.join("&") };
}

function parseRegionParam(encoded: string): string {
  let region: string;
  try {
    region = decodeURIComponent(encoded);
  } catch {
    throw new UnsupportedError("malformed _region parameter: invalid percent-encoding");
  }
  if (!/^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$/.test(region))
    throw new UnsupportedError("malformed _region parameter: not a region name");
  return region;
}

const UPLOAD_PATH = /^\/v2\/.+\/blobs\/uploads\/[^/]+$/;

/**
 * A response's Location as the front door's client should see it. On a
 * redirect (3xx) it passes through untouched: the region sent the client
 * elsewhere on purpose (fetch on miss). Otherwise an absolute URL on a
 * region's registry becomes relative to the front door, and a URL of an
 * upload session gains `_region=<the region holding it>`, so the session's
 * next requests go back there. Any other Location passes through.
 */
export function rewriteLocation(
  location: string,
  status: number,
  servedBy: string,
  registries: ReadonlyMap<string, string>,
): string {
  if (status >= 300 && status < 400) return location;
  let target = location;
  let holder = servedBy;
  if (!location.startsWith("/")) {
    let url: URL;
    try {
      url = new URL(location);
    } catch {
      return location;
    }
    const region = registries.get(url.origin);
    if (region === undefined) return location;
    target = `${url.pathname}${url.search}`;
    holder = region;
  }
  const { path, query } = splitTarget(target);
  if (!UPLOAD_PATH.test(path)) return target;
  // The region's own query: any `_region` in it is replaced, never parsed.
  const rest = query
    .split("&")
    .filter((part) => part !== "" && !part.startsWith("_region="))
    .join("&");
  const param = `_region=${encodeURIComponent(holder)}`;
  return `${path}?${rest === "" ? param : `${rest}&${param}`}`;
}
