/**
 * Where OCI paths are parsed: the one place that knows repository names
 * contain slashes.
 *
 * fastify's router matches one segment per parameter, so before routing
 * (fastify's `rewriteUrl`, wired by ../app.ts `buildApp`) a path under /v2/
 * is matched against the API's shapes, in the order below (upload shapes
 * first: a repository may itself be called `…/blobs`), and rewritten to the
 * route's canonical URL with the name's slashes escaped (`%2F`, and `%` as
 * `%25`, so the parameter fastify decodes is the raw name exactly as the
 * client wrote it). The route plugins (./blobs.ts, ./uploads.ts, …) then
 * declare ordinary routes on the URLs of `OCI_URLS`, with `:name` and
 * `:reference` (`:digest`, `:id`) parameters, schemas and route config.
 * A path under /v2/ that matches no shape is left as it is and answered
 * 404 UNSUPPORTED by the not-found handler.
 */
import type { IncomingMessage } from "node:http";

/** The OCI routes, a bounded metrics label (`meridian_http_request_duration_seconds{route}`). */
export type OciRouteName =
  | "base"
  | "catalog"
  | "upload_start"
  | "upload"
  | "blob"
  | "manifest"
  | "tags"
  | "referrers";

/** Each route's URL as the route plugins declare it. */
export const OCI_URLS: Readonly<Record<OciRouteName, string>> = {
  base: "/v2/",
  catalog: "/v2/_catalog",
  upload_start: "/v2/:name/blobs/uploads/",
  upload: "/v2/:name/blobs/uploads/:id",
  blob: "/v2/:name/blobs/:digest",
  manifest: "/v2/:name/manifests/:reference",
  tags: "/v2/:name/tags/list",
  referrers: "/v2/:name/referrers/:digest",
};

/** The shapes, in matching order, and how each is written back for the router. */
const SHAPES: ReadonlyArray<{ pattern: RegExp; url: (name: string, ref: string) => string }> = [
  { pattern: /^\/v2\/?$/, url: () => "/v2/" },
  { pattern: /^\/v2\/_catalog$/, url: () => "/v2/_catalog" },
  { pattern: /^\/v2\/(.+)\/blobs\/uploads\/?$/, url: (n) => `/v2/${n}/blobs/uploads/` },
  { pattern: /^\/v2\/(.+)\/blobs\/uploads\/([^/]+)$/, url: (n, r) => `/v2/${n}/blobs/uploads/${r}` },
  { pattern: /^\/v2\/(.+)\/blobs\/([^/]+)$/, url: (n, r) => `/v2/${n}/blobs/${r}` },
  { pattern: /^\/v2\/(.+)\/manifests\/([^/]+)$/, url: (n, r) => `/v2/${n}/manifests/${r}` },
  { pattern: /^\/v2\/(.+)\/tags\/list$/, url: (n) => `/v2/${n}/tags/list` },
  { pattern: /^\/v2\/(.+)\/referrers\/([^/]+)$/, url: (n, r) => `/v2/${n}/referrers/${r}` },
];

/** One path segment as the router's parameter decoding gives it back unchanged. */
function escapeSegment(value: string): string {
  return value.includes("%") ? value.replaceAll("%", "%25") : value;
}

function escapeName(value: string): string {
  const escaped = escapeSegment(value);
  return escaped.includes("/") ? escaped.replaceAll("/", "%2F") : escaped;
}

/** fastify's `rewriteUrl`: an OCI path to its route's canonical URL (the query kept); any other unchanged. */
export function rewriteOciUrl(req: IncomingMessage): string {
  const url = req.url ?? "/";
  if (!url.startsWith("/v2")) return url;
  const q = url.indexOf("?");
  const path = q < 0 ? url : url.slice(0, q);
  for (const shape of SHAPES) {
    const m = shape.pattern.exec(path);
    if (m === null) continue;
    const rewritten = shape.url(m[1] === undefined ? "" : escapeName(m[1]), escapeSegment(m[2] ?? ""));
    return q < 0 ? rewritten : rewritten + url.slice(q);
  }
  return url;
}

/** The path the client asked for, before `rewriteOciUrl` (fastify's `originalUrl`, without its query). */
export function originalPath(originalUrl: string): string {
  return originalUrl.split("?", 1)[0]!;
}
