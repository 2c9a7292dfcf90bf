/**
 * The dashboard (/ui/) in headless Chromium against a real three-region
 * mesh (`meridian up`, no authentication): the page loads without a console
 * error and follows the mesh live; a push into region a shows in the matrix
 * (lag and bytes on the links a → b and a → c) and in the search (present in
 * every region with the same digest); at 1280×800 nothing overflows
 * sideways and on a phone width the matrix scrolls inside its own box; a
 * node serves its own region's view; the event streams are capped per
 * address; a dead region turns red within three heartbeat intervals.
 * Screenshots go to test-output/ (dashboard-1280x800.png,
 * dashboard-390x844.png); with MERIDIAN_UPDATE_SCREENSHOT=1 the first is
 * also copied to docs/dashboard.png (the README's picture).
 *
 * "Killing" a region here is freezing its four processes (SIGSTOP: nats,
 * node, peer, worker; `up`'s liveness probe off so it does not restart
 * them): `meridian up` would restart killed processes within half a second,
 * and a frozen region (its sockets accept, nothing answers) is the harder
 * case for the probes than a refused connection. Then they are killed for
 * good (SIGKILL), `up` restarts them, and the page turns the region green
 * again. Last, `meridian region stop c` ends its processes and holds them
 * down (a region that is simply dead): red within three intervals as well.
 * The tests run in order; the freeze and the kills are last.
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Page } from "puppeteer-core";
import { screenshot, startBrowser, type TestBrowser } from "../../testing/browser.js";
import { cleanupStack, eventually, REPO_ROOT, runCli } from "../../testing/harness.js";
import { type RunningMesh, startMesh } from "../../testing/mesh.js";
import { OciClient } from "../../testing/oci-client.js";

// The page's globals, inside the functions puppeteer runs in the page (the project's lib has no DOM).
// biome-ignore lint/suspicious/noExplicitAny: browser globals, typed by the page, not by this compilation
declare const document: any, window: any, getComputedStyle: any;

const cleanup = cleanupStack({ after });
/** The front door's heartbeat interval (its probes' cadence), set for the whole mesh. */
const HEARTBEAT_MS = 1_000;
const REPO = "team/dashboard";
const TAG = "v1";

let mesh: RunningMesh;
let browser: TestBrowser;
let page: Page;
let pushed: { digest: string };

before(async () => {
  mesh = await startMesh(cleanup, ["a", "b", "c"], undefined, [], {
    MERIDIAN_HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_MS),
    // The last test freezes region c on purpose: up must not restart it.
    MERIDIAN_UP_LIVENESS: "off",
  });
  browser = await startBrowser(cleanup);
  page = await browser.page(1280, 800);
});

const cell = (src: string, dst: string) => `#matrix td[data-src="${src}"][data-dst="${dst}"]`;

test("the page loads without console errors and shows every region and link, live", async () => {
  // `meridian up` names it in its ready line (the README's "Dashboard" says to open that URL).
  assert.equal(mesh.dashboard, `${mesh.frontDoor}/ui/`);
  await page.goto(mesh.dashboard!, { waitUntil: "load" });
  await page.waitForSelector('body[data-ready="true"]', { timeout: 10_000 });
  await page.waitForFunction(() => document.getElementById("link")?.textContent === "live", {
    timeout: 10_000,
  });
  assert.equal(await page.$$eval("#matrix td[data-src]", (cells) => cells.length), 6);
  await page.waitForFunction(
    () =>
      [...document.querySelectorAll("#health .region")].every((r) => r.getAttribute("data-level") === "ok"),
    { timeout: 10_000 },
  );
  assert.deepEqual(
    await page.$$eval("#health .region", (rs) => rs.map((r) => r.getAttribute("data-region"))),
    ["a", "b", "c"],
  );
  assert.match(await page.$eval("#scope", (e) => e.textContent ?? ""), /whole mesh/);
  // Live: the "updated" state's time moves without a reload.
  const first = await page.evaluate(() => document.getElementById("updated")?.textContent);
  await page.waitForFunction(
    (t) => document.getElementById("updated")?.textContent !== t,
    { timeout: 5_000 },
    first,
  );
  assert.deepEqual(browser.problems, []);
});

test("a push into region a shows in the matrix: lag and bytes on a → b and a → c", async () => {
  const a = new OciClient(mesh.regions.get("a")!.registry);
  pushed = await a.pushRandomImage(REPO, TAG, 2, 256 * 1024);
  for (const dst of ["b", "c"])
    await page.waitForFunction(
      (sel) => {
        const td = document.querySelector(sel);
        return (
          td !== null &&
          !/no lag yet/.test(td.querySelector(".lag")?.textContent ?? "no lag yet") &&
          /copied/.test(td.querySelector(".rate")?.textContent ?? "")
        );
      },
      { timeout: 30_000 },
      cell("a", dst),
    );
  const level = await page.$eval(cell("a", "b"), (td) => td.getAttribute("data-level"));
  assert.ok(level === "ok" || level === "warn", `a → b is ${level}`);
  // Nothing came from b to c: that link has no lag to show.
  assert.match(await page.$eval(`${cell("b", "c")} .lag`, (e) => e.textContent ?? ""), /no lag yet/);
  assert.deepEqual(browser.problems, []);
});

test("the search shows REPO:TAG present in every region with the same digest", async () => {
  await page.type("#ref", `${REPO}:${TAG}`);
  await page.click('#search button[type="submit"]');
  await page.waitForFunction(
    () => document.querySelectorAll('#search-result tr[data-state="present"]').length === 3,
    { timeout: 15_000 },
  );
  const rows = await page.$$eval("#search-result tbody tr", (trs) =>
    trs.map((tr) => ({
      region: tr.getAttribute("data-region"),
      state: tr.getAttribute("data-state"),
      digest: tr.querySelector(".digest")?.textContent,
    })),
  );
  assert.deepEqual(
    rows.map((r) => r.region),
    ["a", "b", "c"],
  );
  for (const r of rows) assert.equal(r.digest, pushed.digest, `${r.region} serves ${r.digest}`);
  assert.deepEqual(browser.problems, []);
});

test("at 1280×800 nothing overflows sideways; on a phone the matrix scrolls in its own box", async () => {
  const wide = await page.evaluate(() => ({
    scroll: document.scrollingElement!.scrollWidth,
    inner: window.innerWidth,
  }));
  assert.ok(wide.scroll <= wide.inner, `page is ${wide.scroll} px wide in a ${wide.inner} px window`);
  const shot = await screenshot(page, "dashboard-1280x800");
  if (process.env.MERIDIAN_UPDATE_SCREENSHOT === "1") {
    mkdirSync(join(REPO_ROOT, "docs"), { recursive: true });
    copyFileSync(shot, join(REPO_ROOT, "docs", "dashboard.png"));
  }

  const phone = await browser.page(390, 844);
  await phone.goto(`${mesh.frontDoor}/ui/`, { waitUntil: "load" });
  await phone.waitForSelector('body[data-ready="true"]', { timeout: 10_000 });
  const narrow = await phone.evaluate(() => {
    const box = document.getElementById("matrix-box")!;
    const table = document.getElementById("matrix")!;
    return {
      scroll: document.scrollingElement!.scrollWidth,
      inner: window.innerWidth,
      boxScrolls: box.scrollWidth > box.clientWidth,
      overflowX: getComputedStyle(box).overflowX,
      tableWidth: table.getBoundingClientRect().width,
      cellFont: Number.parseFloat(getComputedStyle(table.querySelector("td")!).fontSize),
    };
  });
  assert.ok(narrow.scroll <= narrow.inner, `phone page is ${narrow.scroll} px wide in ${narrow.inner} px`);
  // Readable: the cells keep their size (the table is wider than the phone) and the box scrolls instead.
  assert.ok(narrow.boxScrolls, "the matrix box scrolls sideways");
  assert.equal(narrow.overflowX, "auto");
  assert.ok(narrow.cellFont >= 12, `cell text is ${narrow.cellFont} px`);
  await screenshot(phone, "dashboard-390x844");
  await phone.close();
  assert.deepEqual(browser.problems, []);
});

test("a node serves its own region: its inbound links and its peer's view", async () => {
  const node = await browser.page(1280, 800);
  await node.goto(`${mesh.regions.get("b")!.registry}/ui/`, { waitUntil: "load" });
  await node.waitForSelector('body[data-ready="true"]', { timeout: 10_000 });
  assert.match(
    await node.$eval("#scope", (e) => e.textContent ?? ""),
    /region view, from the node of region b/,
  );
  // One row: into b, from a and c.
  const cells = await node.$$eval("#matrix td[data-src]", (tds) =>
    tds.map((td) => `${td.getAttribute("data-src")}>${td.getAttribute("data-dst")}`),
  );
  assert.deepEqual(cells.sort(), ["a>b", "c>b"]);
  await node.waitForFunction(
    () =>
      !/no lag yet/.test(
        document.querySelector('#matrix td[data-src="a"] .lag')?.textContent ?? "no lag yet",
      ),
    { timeout: 10_000 },
  );
  // b as its node sees it first, then a and c as b's peer sees them (a tick whose Status call
  // missed its deadline on a loaded machine shows b red for a second: wait for a good one).
  await node.waitForFunction(
    () =>
      [...document.querySelectorAll("#health .region")]
        .map((r) => `${r.getAttribute("data-region")}:${r.getAttribute("data-level")}`)
        .join(" ") === "b:ok a:ok c:ok",
    { timeout: 10_000 },
  );
  assert.deepEqual(
    await node.$$eval("#health .region", (rs) => rs.map((r) => r.querySelector("dd")?.textContent)),
    ["node", "peer of b", "peer of b"],
  );
  await node.close();
  assert.deepEqual(browser.problems, []);
});

test("event streams are capped per client address (429); a refused page polls, and a freed place is taken", async () => {
  const base = mesh.regions.get("a")!.registry;
  const streams: AbortController[] = [];
  try {
    for (let i = 0; i < 4; i++) {
      const ac = new AbortController();
      streams.push(ac);
      const res = await fetch(`${base}/ui/api/events`, { signal: ac.signal });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-type"), "text/event-stream; charset=utf-8");
    }
    const refused = await fetch(`${base}/ui/api/events`);
    assert.equal(refused.status, 429);
    assert.equal(
      ((await refused.json()) as { errors: Array<{ code: string }> }).errors[0]!.code,
      "TOOMANYREQUESTS",
    );
    // A page refused its stream polls the state instead, and goes live once a place is free.
    const polling = await browser.page(1280, 800);
    await polling.goto(`${base}/ui/`, { waitUntil: "load" });
    await polling.waitForFunction(() => document.getElementById("link")?.textContent === "polling", {
      timeout: 10_000,
    });
    const before = await polling.evaluate(() => document.getElementById("updated")?.textContent);
    await polling.waitForFunction(
      (t) => document.getElementById("updated")?.textContent !== t,
      { timeout: 5_000 },
      before,
    );
    assert.equal(await polling.$$eval("#matrix td[data-src]", (tds) => tds.length), 2);
    // The one console error: Chromium reporting the refused stream.
    assert.ok(
      browser.problems.length >= 1 && browser.problems.every((p) => /429/.test(p)),
      browser.problems.join("\n"),
    );
    browser.problems.length = 0;
    streams.pop()!.abort();
    await polling.waitForFunction(() => document.getElementById("link")?.textContent === "live", {
      timeout: 15_000,
    });
    await polling.close();
    await eventually(async () => {
      const ac = new AbortController();
      const res = await fetch(`${base}/ui/api/events`, { signal: ac.signal });
      if (res.status === 200) streams.push(ac);
      else await res.body?.cancel();
      return res.status === 200;
    }, 5_000);
  } finally {
    for (const ac of streams) ac.abort();
  }
});

test("a dead region turns red within three heartbeat intervals of its death", async (t) => {
  const c = mesh.regions.get("c")!;
  const pids = Object.values(c.pids);
  assert.equal(pids.length, 4);
  const signal = (sig: NodeJS.Signals) => {
    for (const pid of pids) {
      try {
        process.kill(pid, sig);
      } catch {
        // already gone
      }
    }
  };
  cleanup(() => signal("SIGCONT"));
  const killedAt = Date.now();
  signal("SIGSTOP");
  await page.waitForFunction(
    () => document.querySelector('#health .region[data-region="c"]')?.getAttribute("data-level") === "bad",
    { timeout: 10 * HEARTBEAT_MS, polling: 50 },
  );
  const redAfter = Date.now() - killedAt;
  t.diagnostic(`region c red on the page ${redAfter} ms after its processes were frozen`);
  // The front door's probes take it down within 3 intervals and the page is told at once (an SSE
  // push on the probes' verdict, not the next tick). The allowance is for a loaded 2-core machine's
  // scheduling of the probes (each one interval late at most), as the front door's own tests allow.
  assert.ok(redAfter <= 3 * HEARTBEAT_MS + 1_000, `red after ${redAfter} ms`);
  assert.match(
    await page.$eval('#health .region[data-region="c"] .status', (e) => e.textContent ?? ""),
    /DOWN/,
  );
  // The links into and out of c are red too, the others not.
  await page.waitForFunction(
    (sel) => document.querySelector(sel)?.getAttribute("data-level") === "bad",
    { timeout: 5_000 },
    cell("a", "c"),
  );
  assert.notEqual(await page.$eval(cell("a", "b"), (td) => td.getAttribute("data-level")), "bad");
  await screenshot(page, "dashboard-region-down");
  assert.deepEqual(browser.problems, []);
});

test("the frozen region killed, up restarts its processes: it turns green again on the page", async (t) => {
  const pids = Object.values(mesh.regions.get("c")!.pids);
  const killedAt = Date.now();
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  await page.waitForFunction(
    () => document.querySelector('#health .region[data-region="c"]')?.getAttribute("data-level") === "ok",
    { timeout: 45_000, polling: 100 },
  );
  t.diagnostic(`region c green again ${Date.now() - killedAt} ms after its processes were killed`);
  assert.match(
    await page.$eval('#health .region[data-region="c"] .status', (e) => e.textContent ?? ""),
    /up/,
  );
  // The links into c read its new worker's page again.
  await page.waitForFunction(
    (sel) => document.querySelector(sel)?.getAttribute("data-level") !== "bad",
    { timeout: 15_000 },
    cell("a", "c"),
  );
  assert.deepEqual(browser.problems, []);
});

test("a region whose processes are stopped and held down (meridian region stop) turns red within three heartbeat intervals", async (t) => {
  const stop = await runCli(["region", "stop", "c", "--data", mesh.dataDir]);
  assert.equal(stop.code, 0, stop.stderr);
  // The command returns once c's processes have exited: they are dead from here at the latest.
  const deadAt = Date.now();
  cleanup(async () => {
    await runCli(["region", "start", "c", "--data", mesh.dataDir]);
  });
  await page.waitForFunction(
    () => document.querySelector('#health .region[data-region="c"]')?.getAttribute("data-level") === "bad",
    { timeout: 10 * HEARTBEAT_MS, polling: 50 },
  );
  const redAfter = Date.now() - deadAt;
  t.diagnostic(`region c red on the page ${redAfter} ms after its processes were stopped`);
  assert.ok(redAfter <= 3 * HEARTBEAT_MS + 1_000, `red after ${redAfter} ms`);
  const start = await runCli(["region", "start", "c", "--data", mesh.dataDir]);
  assert.equal(start.code, 0, start.stderr);
  await page.waitForFunction(
    () => document.querySelector('#health .region[data-region="c"]')?.getAttribute("data-level") === "ok",
    { timeout: 45_000, polling: 100 },
  );
  assert.deepEqual(browser.problems, []);
});
