/**
 * Headless Chromium for the dashboard's tests (control-plane/test/dashboard*.test.ts):
 * Debian's `/usr/bin/chromium` driven by puppeteer-core (no browser
 * download), closed in the test's cleanup (and killed by pid if closing
 * hangs). Every console error, page error and failed request of every page
 * is collected in `problems`, so a test asserts the page ran clean.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { type After, REPO_ROOT } from "./harness.js";

export const CHROMIUM = process.env.MERIDIAN_CHROMIUM ?? "/usr/bin/chromium";

/** Where screenshots go: test-output/ at the repository root (made on demand). */
export const TEST_OUTPUT = join(REPO_ROOT, "test-output");

export interface TestBrowser {
  browser: Browser;
  /** Console errors, uncaught page errors and failed requests, as "kind: text (url)". */
  problems: string[];
  /** A new page of `width`×`height` whose problems are collected. */
  page(width?: number, height?: number): Promise<Page>;
}

export async function startBrowser(after: After): Promise<TestBrowser> {
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
  });
  const pid = browser.process()?.pid;
  after(async () => {
    const closed = browser.close().then(
      () => true,
      () => false,
    );
    const timer = new Promise<boolean>((r) => setTimeout(() => r(false), 5_000));
    if (!(await Promise.race([closed, timer])) && pid !== undefined) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  });
  const problems: string[] = [];
  return {
    browser,
    problems,
    async page(width = 1280, height = 800) {
      const page = await browser.newPage();
      await page.setViewport({ width, height });
      page.on("console", (msg) => {
        if (msg.type() === "error") problems.push(`console: ${msg.text()} (${msg.location()?.url ?? ""})`);
      });
      page.on("pageerror", (err) => problems.push(`pageerror: ${(err as Error).message ?? String(err)}`));
      page.on("requestfailed", (req) => {
        // An event stream or a page closed by the test is not a failure of the page.
        if (req.failure()?.errorText === "net::ERR_ABORTED") return;
        problems.push(`requestfailed: ${req.failure()?.errorText} (${req.url()})`);
      });
      return page;
    },
  };
}

/** A screenshot of the whole page to test-output/`name`.png; returns its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(TEST_OUTPUT, { recursive: true });
  const path = join(TEST_OUTPUT, `${name}.png`);
  await page.screenshot({ path: path as `${string}.png`, fullPage: true });
  return path;
}
