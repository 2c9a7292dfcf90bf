/**
 * The dashboard with authentication on (`meridian up --auth`, three regions,
 * real processes): the page and its assets are public, its data is not.
 * On the front door and on a node alike: no credentials → 401 (a challenge
 * that is not Basic, so browsers show the page's form, not their prompt); a
 * wrong password → 401; a user who is neither a system admin nor an operator
 * → 403; a read-only operator (helper D's role) → 200, as a system admin;
 * a pull-scoped bearer token → refused; the event stream only with a
 * session token from POST /ui/api/session, and not with a forged one,
 * another server's, or none; the state never carries a secret. In headless
 * Chromium the sign-in form refuses a wrong password and then follows the
 * mesh live as the admin, without any other console error.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { startBrowser } from "../../testing/browser.js";
import { cleanupStack, eventually, runCli, tempDir } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";

// The page's globals, inside the functions puppeteer runs in the page (the project's lib has no DOM).
// biome-ignore lint/suspicious/noExplicitAny: browser globals, typed by the page, not by this compilation
declare const document: any, sessionStorage: any, localStorage: any;

const cleanup = cleanupStack({ after });
const DEV_PASSWORD = "a developer's password";
let mesh: RunningMesh;
let adminPassword: string;
let servers: Array<{ name: string; base: string }>;

const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
const admin = () => basic("admin", adminPassword);

before(async () => {
  mesh = await startMesh(cleanup, ["a", "b", "c"], undefined, ["--auth"]);
  adminPassword = readFileSync(mesh.adminPasswordFile!, "utf8").trim();
  servers = [
    { name: "front door", base: mesh.frontDoor! },
    { name: "node a", base: mesh.regions.get("a")!.registry },
  ];
  const passwordFile = join(tempDir(cleanup), "dev-password");
  writeFileSync(passwordFile, `${DEV_PASSWORD}\n`);
  for (const [user, flags] of [
    ["dev", []],
    ["ops", ["--operator"]],
  ] as const) {
    const add = await runCli([
      "user",
      "add",
      user,
      ...flags,
      "--password-file",
      passwordFile,
      "--data",
      mesh.dataDir,
    ]);
    assert.equal(add.code, 0, add.stderr);
  }
  // Every region knows dev and ops (the front door asks any up region).
  for (const r of mesh.regions.values())
    for (const user of ["dev", "ops"])
      await eventually(
        async () =>
          (await fetch(`${r.registry}/v2/`, { headers: { authorization: basic(user, DEV_PASSWORD) } }))
            .status === 200,
        20_000,
        100,
      );
});

async function code(res: Response): Promise<string | undefined> {
  return ((await res.json()) as { errors?: Array<{ code: string }> }).errors?.[0]?.code;
}

const API = ["/ui/api/state", "/ui/api/activity", "/ui/api/search?ref=team/app:v1"];

test("the page and its assets are public, with a strict CSP; the data is not", async () => {
  for (const { name, base } of servers) {
    const page = await fetch(`${base}/ui/`);
    assert.equal(page.status, 200, name);
    const csp = page.headers.get("content-security-policy") ?? "";
    assert.match(csp, /script-src 'self'/, name);
    assert.match(csp, /default-src 'none'/, name);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*/, name);
    assert.equal(page.headers.get("x-content-type-options"), "nosniff", name);
    assert.match(await page.text(), /<script type="module" src="app.js">/);
    const js = await fetch(`${base}/ui/app.js`);
    assert.equal(js.headers.get("content-type"), "text/javascript; charset=utf-8");
    assert.equal(
      ((await (await fetch(`${base}/ui/api/session`)).json()) as { auth: boolean }).auth,
      true,
      name,
    );
    // Nothing outside the fixed list of assets is served, however the path is spelt.
    for (const path of ["/ui/../package.json", "/ui/%2e%2e/package.json", "/ui/api.js", "/ui/README.md"])
      assert.equal((await fetch(`${base}${path}`)).status, 404, `${name} ${path}`);

    for (const path of [...API, "/ui/api/events"]) {
      const res = await fetch(`${base}${path}`);
      assert.equal(res.status, 401, `${name} ${path}`);
      assert.equal(await code(res), "UNAUTHORIZED");
      assert.doesNotMatch(res.headers.get("www-authenticate") ?? "", /^Basic/i, "no browser prompt");
    }
    const session = await fetch(`${base}/ui/api/session`, { method: "POST" });
    assert.equal(session.status, 401, `${name} POST session`);
  }
});

test("a wrong password, a user without the role and a pull-scoped token are refused", async () => {
  const token = (await (
    await fetch(
      `${mesh.regions.get("a")!.registry}/auth/token?service=meridian&scope=repository:team/app:pull`,
      {
        headers: { authorization: basic("dev", DEV_PASSWORD) },
      },
    )
  ).json()) as { token: string };
  assert.ok(token.token, "a pull token was issued");
  for (const { name, base } of servers) {
    // One wrong password per server: the regions allow 5 failed logins a minute per address (then 429).
    const wrong = await fetch(`${base}/ui/api/state`, {
      headers: { authorization: basic("admin", "not it") },
    });
    assert.equal(wrong.status, 401, `${name}: wrong password`);
    assert.equal(await code(wrong), "UNAUTHORIZED");
    for (const path of API) {
      const dev = await fetch(`${base}${path}`, { headers: { authorization: basic("dev", DEV_PASSWORD) } });
      assert.equal(dev.status, 403, `${name} ${path} dev`);
      assert.equal(await code(dev), "DENIED");
      const pull = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token.token}` } });
      assert.ok(pull.status === 401 || pull.status === 403, `${name} ${path} pull token: ${pull.status}`);
      assert.doesNotMatch(await pull.text(), /"regions"|"links"/, "no state in a refusal");
    }
    const dev = await fetch(`${base}/ui/api/session`, {
      method: "POST",
      headers: { authorization: basic("dev", DEV_PASSWORD) },
    });
    assert.equal(dev.status, 403, `${name}: no session for dev`);
  }
});

test("an admin gets the state and a session for the stream; a forged, foreign or missing token is refused", async () => {
  const tokens = new Map<string, string>();
  for (const { name, base } of servers) {
    const state = await fetch(`${base}/ui/api/state`, { headers: { authorization: admin() } });
    assert.equal(state.status, 200, name);
    assert.equal(state.headers.get("cache-control"), "no-store");
    const session = await fetch(`${base}/ui/api/session`, {
      method: "POST",
      headers: { authorization: admin() },
    });
    assert.equal(session.status, 200, name);
    const { token, expiresAt } = (await session.json()) as { token: string; expiresAt: string };
    const ttl = Date.parse(expiresAt) - Date.now();
    assert.ok(ttl > 5 * 60_000 && ttl <= 10 * 60_000, `session lasts ${ttl} ms`);
    tokens.set(name, token);

    const ac = new AbortController();
    const stream = await fetch(`${base}/ui/api/events?session=${encodeURIComponent(token)}`, {
      signal: ac.signal,
    });
    assert.equal(stream.status, 200, name);
    const reader = stream.body!.getReader();
    let text = "";
    while (!text.includes("event: state")) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString("utf8");
    }
    ac.abort();
    assert.match(text, /event: state\ndata: \{"scope"/, name);

    // One character changed in the payload, then in the MAC: both refused.
    const dot = token.indexOf(".");
    const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === "A" ? "B" : "A") + s.slice(i + 1);
    for (const forged of [flip(token, 2), flip(token, dot + 3), `${token.slice(0, dot)}.`, "x", ""]) {
      const res = await fetch(`${base}/ui/api/events?session=${encodeURIComponent(forged)}`);
      assert.equal(res.status, 401, `${name} forged ${forged.slice(0, 12)}`);
      await res.body?.cancel();
    }
    // A session token is for the stream only: it is no credential for the rest of the API.
    const asBearer = await fetch(`${base}/ui/api/state?session=${encodeURIComponent(token)}`);
    assert.equal(asBearer.status, 401);
  }
  // Each server's tokens are its own.
  const foreign = await fetch(
    `${servers[1]!.base}/ui/api/events?session=${encodeURIComponent(tokens.get("front door")!)}`,
  );
  assert.equal(foreign.status, 401);
});

test("a read-only operator sees the dashboard's data, as a system admin does", async () => {
  const ops = basic("ops", DEV_PASSWORD);
  for (const { name, base } of servers) {
    for (const path of ["/ui/api/state", "/ui/api/activity", "/ui/api/search?ref=team/app:v1"]) {
      const res = await fetch(`${base}${path}`, { headers: { authorization: ops } });
      assert.equal(
        res.status,
        200,
        `${name} ${path}: ${res.status} ${res.status === 200 ? "" : await res.text()}`,
      );
      await res.body?.cancel();
    }
    const session = await fetch(`${base}/ui/api/session`, {
      method: "POST",
      headers: { authorization: ops },
    });
    assert.equal(session.status, 200, name);
  }
});

test("the state carries no secret", async () => {
  const keyPem = readFileSync(join(mesh.dataDir, "auth", "token-key.pem"), "utf8");
  for (const { name, base } of servers) {
    const text = await (await fetch(`${base}/ui/api/state`, { headers: { authorization: admin() } })).text();
    assert.match(text, /"regions"/, name);
    for (const secret of [adminPassword, keyPem.split("\n")[1]!, "PRIVATE KEY", "Basic ", "Bearer "])
      assert.ok(!text.includes(secret), `${name}: the state holds ${secret.slice(0, 10)}…`);
  }
});

test("in Chromium: the sign-in form refuses a wrong password, then follows the mesh as the admin", async () => {
  const browser = await startBrowser(cleanup);
  const page = await browser.page(1280, 800);
  await page.goto(`${mesh.frontDoor}/ui/`, { waitUntil: "load" });
  await page.waitForSelector("#sign-in:not([hidden])", { timeout: 10_000 });
  assert.equal(await page.$eval("#main", (m) => m.hasAttribute("hidden")), true, "no data before signing in");
  assert.deepEqual(browser.problems, [], "the form shows without a failed request");

  await page.type("#user", "admin");
  await page.type("#password", "not the password");
  await page.click('#sign-in button[type="submit"]');
  await page.waitForFunction(() => (document.getElementById("sign-in-error")?.textContent ?? "") !== "", {
    timeout: 10_000,
  });
  // The refused sign-in is the one failed request the browser reports.
  assert.equal(browser.problems.length, 1, browser.problems.join("\n"));
  assert.match(browser.problems[0]!, /status of 401/);
  browser.problems.length = 0;

  for (const field of ["#user", "#password"])
    await page.$eval(field, (i) => {
      i.value = "";
    });
  await page.type("#user", "admin");
  await page.type("#password", adminPassword);
  await page.click('#sign-in button[type="submit"]');
  await page.waitForFunction(() => document.getElementById("link")?.textContent === "live", {
    timeout: 15_000,
  });
  assert.equal(await page.$$eval("#matrix td[data-src]", (cells) => cells.length), 6);
  assert.equal(await page.$eval("#password", (i) => i.value), "", "the password field is cleared");
  // The page keeps a Basic header for this tab only; the stream's URL carries the session token, not it.
  const stored = await page.evaluate(() => Object.keys(sessionStorage));
  assert.deepEqual(stored, ["meridian-dashboard-credentials"]);
  assert.equal(await page.evaluate(() => localStorage.length), 0);

  await page.click("#sign-out");
  await page.waitForSelector("#sign-in:not([hidden])", { timeout: 5_000 });
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  assert.deepEqual(browser.problems, []);
});

/** GET from a chosen local address (all of 127.0.0.0/8 is loopback on Linux): the status. */
function getFrom(url: string, localAddress: string, authorization: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { localAddress, headers: { authorization } }, (res) => {
      res.resume();
      res.once("end", () => resolve(res.statusCode ?? 0));
    });
    req.once("error", reject);
    req.end();
  });
}

test("through the front door, one client's failed sign-ins are counted against its own address, not the front door's", async () => {
  // The front door checks dashboard credentials at a region with the client's address in
  // X-Forwarded-For and its proxy proof; without the proof the region would count every
  // failure against the front door's own address, and 5 wrong passwords a minute from
  // anyone would lock every dashboard user out (429).
  // A user who has not signed in yet: a password verified a moment ago skips the limiter.
  const passwordFile = join(tempDir(cleanup), "ops2-password");
  writeFileSync(passwordFile, `${DEV_PASSWORD}\n`);
  const add = await runCli([
    "user",
    "add",
    "ops2",
    "--operator",
    "--password-file",
    passwordFile,
    "--data",
    mesh.dataDir,
  ]);
  assert.equal(add.code, 0, add.stderr);
  for (const r of mesh.regions.values())
    await eventually(
      async () =>
        (
          await (await fetch(`${r.registry}/admin/v1/users`, { headers: { authorization: admin() } })).text()
        ).includes('"ops2"'),
      20_000,
      100,
    );
  const state = `${mesh.frontDoor!}/ui/api/state`;
  const statuses: number[] = [];
  for (let i = 0; i < 7; i++) statuses.push(await getFrom(state, "127.0.0.2", basic("mallory", "guess")));
  assert.equal(statuses[0], 401, "a wrong password is a 401");
  assert.equal(statuses.at(-1), 429, `the guessing address is limited: ${statuses.join(" ")}`);
  assert.equal(
    await getFrom(state, "127.0.0.3", basic("ops2", DEV_PASSWORD)),
    200,
    "another client signs in",
  );
});
