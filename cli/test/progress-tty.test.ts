/**
 * cli/progress.ts in a real pseudo-terminal (`script` from util-linux runs
 * the command on one): the bar is redrawn in place — carriage return, clear
 * the line — with the rate and the time left, and the line is ended at the
 * end. A small driver process counts 0 → 100 over about 1.5 s, as a long
 * command would, so the rate (shown from 0.5 s on) and the ETA appear; the
 * commands' own plain lines are covered against a real mesh
 * (observe-cli.test.ts).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { cleanupStack, REPO_ROOT, tempDir } from "../../testing/harness.js";

const cleanup = cleanupStack({ after });
const SCRIPT = "/usr/bin/script";

test("on a terminal: one line redrawn with a bar, rate and ETA, ended by a newline", {
  skip: !existsSync(SCRIPT) && "no util-linux script",
}, () => {
  const dir = tempDir(cleanup, "meridian-progress-tty-");
  const driver = join(dir, "drive.mjs");
  writeFileSync(
    driver,
    `import { progress } from ${JSON.stringify(join(REPO_ROOT, "dist", "cli", "progress.js"))};
const p = progress("copying", 100, { noun: "items" });
let done = 0;
const timer = setInterval(() => {
  done += 5;
  p.update(done);
  if (done >= 100) { clearInterval(timer); p.finish(); process.stderr.write("summary\\n"); }
}, 75);
`,
  );
  // Output of the terminal goes to script's stdout; the typescript file is not needed.
  // The pseudo-terminal's width is set, as a terminal window has one (the bar is cut to it).
  const r = spawnSync(SCRIPT, ["-qec", `stty cols 120 rows 40; ${process.execPath} ${driver}`, "/dev/null"], {
    encoding: "utf8",
    timeout: 30_000,
    env: { ...process.env, TERM: "xterm" },
  });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  const out = r.stdout;
  const frames = out.split("\r\x1b[2K").slice(1);
  assert.ok(frames.length >= 5, `redrawn in place: ${JSON.stringify(out)}`);
  for (const f of frames) assert.match(f, /^copying \[[#.]{24}\] \d+\/100 items {2}\d+%/);
  assert.ok(
    frames.some((f) => /\d+(\.\d)?\/s {2}ETA \d+:\d\d/.test(f)),
    `a frame with rate and ETA: ${JSON.stringify(frames)}`,
  );
  assert.match(frames.at(-1)!, /^copying \[#{24}\] 100\/100 items {2}100%/);
  // The line is ended before what follows (the terminal turns \n into \r\n).
  assert.match(out, /100%[^\r\n]*\r?\nsummary/);
});
