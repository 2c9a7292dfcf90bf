// The dashboard page: signs in when the server asks for it, then follows the
// state live (Server-Sent Events, api/events; polling api/state every second
// when the stream cannot be opened) and draws each section.
//
// Credentials: the sign-in form's user and password are kept as a Basic
// header in sessionStorage (this tab only, gone when it closes) and sent on
// every fetch; an EventSource cannot send headers, so the stream presents a
// short-lived session token from POST api/session, renewed before it expires.
// Signed in through an identity provider (a node with OIDC, issue 18), the
// page stores nothing: the node's HttpOnly session cookie goes with every
// fetch, and signing out asks the node to end the session (then the
// provider's logout page). Nothing else is stored. Paths are relative: the page works under any
// prefix the front door or a node serves it at (/ui/).
import { ACTIVITY_REFRESH_MS, refreshActivity } from "./activity.js";
import { ago, duration, el, fill } from "./format.js";
import { renderHealth } from "./health.js";
import { renderMatrix } from "./matrix.js";
import { setupSearch } from "./search.js";

const CREDENTIALS_KEY = "meridian-dashboard-credentials";
const POLL_MS = 1_000;
const STREAM_RETRY_MS = 5_000;
/** Renew the stream's session this long before its token expires. */
const RENEW_BEFORE_MS = 60_000;

const $ = (id) => document.getElementById(id);
let authRequired = false;
/** Signed in by the node's session cookie (OIDC) rather than stored credentials. */
let cookieSession = false;
/** What this server offers beyond the state (GET api/session). */
let offers = { search: true, activity: true };
let stream;
let pollTimer;
let renewTimer;
let activityTimer;
let lastState;

/** fetch with the stored credentials; a 401 sends the user back to the sign-in form (undefined). */
async function api(path, init = {}) {
  const headers = new Headers(init.headers);
  const credentials = sessionStorage.getItem(CREDENTIALS_KEY);
  if (credentials) headers.set("authorization", credentials);
  let res;
  try {
    res = await fetch(path, { ...init, headers, cache: "no-store" });
  } catch {
    setLink("unknown", "offline");
    return undefined;
  }
  if (res.status === 401 && authRequired) {
    signOut("Your session ended or the credentials were refused: sign in again.");
    return undefined;
  }
  return res;
}

function setLink(level, text) {
  const link = $("link");
  link.dataset.level = level;
  link.textContent = text;
}

function render(state) {
  lastState = state;
  $("scope").textContent =
    state.scope === "mesh"
      ? `whole mesh, from the ${state.servedBy}`
      : `region view, from the ${state.servedBy}`;
  const t = state.thresholds;
  $("thresholds").textContent =
    `Green: under ${duration(t.okMs)} (p99 and oldest pending); amber: under ${duration(t.warnMs)}; red: above, or unreachable.`;
  const link = state.links.find((l) => l.windowSeconds !== undefined);
  if (link) $("window").textContent = duration(link.windowSeconds * 1000);
  renderMatrix($("matrix"), state);
  renderHealth($("health"), state);
  $("updated").textContent = `updated ${ago(state.at)}`;
  document.body.dataset.ready = "true";
}

function stopFollowing() {
  stream?.close();
  stream = undefined;
  clearInterval(pollTimer);
  pollTimer = undefined;
  clearTimeout(renewTimer);
  clearInterval(activityTimer);
}

function startPolling() {
  if (pollTimer !== undefined) return;
  setLink("warn", "polling");
  const poll = async () => {
    const res = await api("api/state");
    if (res?.ok) render(await res.json());
  };
  void poll();
  pollTimer = setInterval(poll, POLL_MS);
}

async function openStream() {
  let url = "api/events";
  if (authRequired) {
    const res = await api("api/session", { method: "POST" });
    if (res === undefined || !res.ok) {
      startPolling();
      setTimeout(openStream, STREAM_RETRY_MS);
      return;
    }
    const session = await res.json();
    url += `?session=${encodeURIComponent(session.token)}`;
    const renewIn = Math.max(5_000, Date.parse(session.expiresAt) - Date.now() - RENEW_BEFORE_MS);
    clearTimeout(renewTimer);
    renewTimer = setTimeout(openStream, renewIn);
  }
  stream?.close();
  const es = new EventSource(url);
  stream = es;
  es.addEventListener("state", (event) => {
    if (stream !== es) return;
    clearInterval(pollTimer);
    pollTimer = undefined;
    setLink("ok", "live");
    render(JSON.parse(event.data));
  });
  es.addEventListener("error", () => {
    if (stream !== es) return;
    // CONNECTING: the browser reconnects by itself; CLOSED: refused (too many streams, an expired session).
    if (es.readyState === EventSource.CLOSED) {
      stream = undefined;
      startPolling();
      setTimeout(openStream, STREAM_RETRY_MS);
    } else setLink("warn", "reconnecting");
  });
}

async function follow() {
  $("sign-in").hidden = true;
  $("main").hidden = false;
  $("sign-out").hidden = !authRequired;
  const res = await api("api/state");
  if (res === undefined) return;
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    setLink("bad", body.errors?.[0]?.message ?? `error ${res.status}`);
    return;
  }
  render(await res.json());
  void openStream();
  if (offers.activity) {
    void refreshActivity($("activity"), api);
    activityTimer = setInterval(() => refreshActivity($("activity"), api), ACTIVITY_REFRESH_MS);
  }
}

function signOut(message = "") {
  stopFollowing();
  cookieSession = false;
  sessionStorage.removeItem(CREDENTIALS_KEY);
  $("main").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message;
  setLink("unknown", "signed out");
}

async function signIn(event) {
  event.preventDefault();
  const user = $("user").value;
  const password = $("password").value;
  const basic = `Basic ${btoa(String.fromCharCode(...new TextEncoder().encode(`${user}:${password}`)))}`;
  const res = await fetch("api/session", {
    method: "POST",
    headers: { authorization: basic },
    cache: "no-store",
  });
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    $("sign-in-error").textContent = body.errors?.[0]?.message ?? `sign-in failed (${res.status})`;
    return;
  }
  sessionStorage.setItem(CREDENTIALS_KEY, basic);
  $("password").value = "";
  $("sign-in-error").textContent = "";
  await follow();
}

/** End the node's OIDC session, then go to the provider's logout page (or back here). */
async function endCookieSession() {
  const res = await fetch("../auth/oidc/logout", {
    method: "POST",
    headers: { accept: "application/json" },
    cache: "no-store",
  }).catch(() => undefined);
  const body = res?.ok ? await res.json().catch(() => ({})) : {};
  if (typeof body.next === "string") window.location.assign(body.next);
}

async function main() {
  $("sign-in").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => {
    const endSession = cookieSession;
    signOut();
    if (endSession) void endCookieSession();
  });
  setupSearch($("search"), $("ref"), $("search-result"), api);
  setInterval(() => {
    if (lastState) $("updated").textContent = `updated ${ago(lastState.at)}`;
  }, 1_000);
  // Whether this server asks for credentials (public: it says nothing else).
  const res = await fetch("api/session", { cache: "no-store" }).catch(() => undefined);
  if (res === undefined || !res.ok) {
    fill($("scope"), el("span", { class: "error" }, "the server did not answer; reload to retry"));
    return;
  }
  const session = await res.json();
  authRequired = session.auth === true;
  offers = { search: session.search === true, activity: session.activity === true };
  $("search-section").hidden = !offers.search;
  $("activity-section").hidden = !offers.activity;
  if (typeof session.signIn === "string") {
    $("sso").href = session.signIn;
    $("sso-box").hidden = false;
  }
  if (authRequired && !sessionStorage.getItem(CREDENTIALS_KEY)) {
    // Signed in through the identity provider: the node's session cookie goes with every fetch.
    cookieSession = session.signedIn === true;
    if (cookieSession) await follow();
    else signOut();
  } else await follow();
}

void main();
