/**
 * External endpoints (issue 17, item 1): another OCI registry named by URL,
 * an admin object kept by `endpoint.set` / `endpoint.deleted` events and
 * replicated like every admin object.
 *
 * Contracts:
 * - `name`: as policy and retention names (`ENDPOINT_NAME`).
 * - `url`: http or https, a host (and port) only: no credentials in it, no
 *   path beyond "/", no query or fragment (the OCI API's paths are the
 *   client's; a path would be a place to hide tricks). Stored normalized
 *   (`URL.origin`).
 * - `credentialsFile`, `caFile`: absolute paths read on the machine that uses
 *   the endpoint (the CLI, a worker); the event never carries a secret, and
 *   no API answers one (the file's path is not a secret).
 * - `insecure`: TLS verification off (labs only); never with `caFile`, only
 *   for https.
 */

export const ENDPOINT_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

export interface Endpoint {
  name: string;
  url: string;
  credentialsFile?: string;
  caFile?: string;
  insecure: boolean;
}

/** Every problem of an endpoint's fields ("field: why"); empty when valid. */
export function endpointProblems(e: Record<string, unknown>): string[] {
  const problems: string[] = [];
  if (typeof e.name !== "string" || !ENDPOINT_NAME.test(e.name))
    problems.push(`name: want ${ENDPOINT_NAME.source}, got ${JSON.stringify(String(e.name).slice(0, 64))}`);
  const url = typeof e.url === "string" ? urlProblem(e.url) : "want a string";
  if (url !== undefined) problems.push(`url: ${url}`);
  for (const field of ["credentialsFile", "caFile"] as const) {
    const v = e[field];
    if (v === undefined) continue;
    if (typeof v !== "string" || !v.startsWith("/") || v.length > 1024 || v.includes("\0"))
      problems.push(`${field}: want an absolute path`);
  }
  if (typeof e.insecure !== "boolean") problems.push("insecure: want a boolean");
  if (e.insecure === true && e.caFile !== undefined) problems.push("insecure: not with caFile");
  if (e.insecure === true && typeof e.url === "string" && e.url.startsWith("http:"))
    problems.push("insecure: only for https");
  return problems;
}

/** Why `text` is not an endpoint URL; undefined when it is one. */
export function urlProblem(text: string): string | undefined {
  if (text.length > 2048) return "too long";
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return `not a URL: ${JSON.stringify(text.slice(0, 64))}`;
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") return "want http or https";
  if (u.username !== "" || u.password !== "") return "credentials belong in a credentials file, not the URL";
  if (u.pathname !== "/" || u.search !== "" || u.hash !== "") return "want a scheme, host and port only";
  if (normalizedUrl(text) !== text && `${normalizedUrl(text)}/` !== text)
    return `want the normalized form ${normalizedUrl(text)}`;
  return undefined;
}

/** The stored form of a valid endpoint URL (scheme://host[:port]). */
export function normalizedUrl(text: string): string {
  return new URL(text).origin;
}
