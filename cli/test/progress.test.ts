/**
 * cli/progress.ts: the progress of long commands, drawn in place on a
 * terminal and as plain lines elsewhere. A pure module: a recording stream
 * and a clock the test moves stand in for stderr and time.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { progress } from "../progress.js";

function recorder(isTTY: boolean) {
  const out: string[] = [];
  return { out, stream: { isTTY, columns: 200, write: (t: string) => out.push(t) } };
}

test("not a terminal: plain lines at most once a second, each complete, and the last state at the end", () => {
  const { out, stream } = recorder(false);
  let t = 0;
  const p = progress("backup of a: blobs", 200, { stream, noun: "blobs", now: () => t });
  p.update(10); // the first update draws
  t = 400;
  p.update(20); // within a second: not drawn
  t = 1_000;
  p.update(50, "12.5 MiB, 50 new");
  t = 4_000;
  p.update(200, "50.0 MiB, 200 new");
  p.finish();
  p.update(300); // after finish: ignored
  assert.deepEqual(out, [
    "backup of a: blobs: 10/200 blobs, 5%\n",
    "backup of a: blobs: 50/200 blobs, 25%, 50/s, ETA 0:03, 12.5 MiB, 50 new\n",
    "backup of a: blobs: 200/200 blobs, 100%, 50/s, 50.0 MiB, 200 new\n",
  ]);
  assert.ok(
    out.every((l) => !l.includes("\r") && !l.includes("\x1b")),
    "no control characters in a log",
  );
});

test("a terminal: one line redrawn in place with a bar, rate and time left, ended by a newline", () => {
  const { out, stream } = recorder(true);
  let t = 0;
  const p = progress("restore of a: blobs", 100 * 1024 * 1024, { stream, unit: "bytes", now: () => t });
  t = 2_000;
  p.update(25 * 1024 * 1024);
  t = 2_050;
  p.update(26 * 1024 * 1024); // within 100 ms: not redrawn
  p.finish();
  assert.equal(out.length, 3);
  assert.equal(
    out[0],
    "\r\x1b[2Krestore of a: blobs [######..................] 25.0/100.0 MiB  25%  12.5 MiB/s  ETA 0:06",
  );
  assert.match(out[1]!, /^\r\x1b\[2Krestore of a: blobs \[#{6}\.{18}\] 26\.0\/100\.0 MiB {2}26%/);
  assert.equal(out[2], "\n", "the line is ended before whatever comes next");
});

test("no total: counts without a bar, percentage or time left; long lines are cut to the terminal", () => {
  const { out, stream } = recorder(true);
  stream.columns = 30;
  let t = 0;
  const p = progress("rebuilding the view of region a", undefined, { stream, now: () => t });
  t = 1_000;
  p.update(1234);
  p.finish();
  assert.equal(out[0], `\r\x1b[2K${"rebuilding the view of region a 1234  1234/s".slice(0, 29)}`);
});

test("a total learnt later replaces the first; log prints above the bar without tearing it", () => {
  const { out, stream } = recorder(true);
  const lines: string[] = [];
  let t = 0;
  const p = progress("policy run p", undefined, { stream, noun: "repos", now: () => t });
  t = 1_000;
  p.update(2, "0/2 regions", 10);
  p.log("b: ok\n", { write: (text: string) => lines.push(text) });
  p.finish();
  p.log("after\n");
  assert.deepEqual(lines, ["b: ok\n"]);
  assert.deepEqual(out, [
    "\r\x1b[2Kpolicy run p [#####...................] 2/10 repos  20%  2.0/s  ETA 0:04  0/2 regions",
    "\r\x1b[2K",
    "\r\x1b[2Kpolicy run p [#####...................] 2/10 repos  20%  2.0/s  ETA 0:04  0/2 regions",
    // finish draws the last state once more and ends the line.
    "\r\x1b[2Kpolicy run p [#####...................] 2/10 repos  20%  2.0/s  ETA 0:04  0/2 regions",
    "\n",
    "after\n",
  ]);

  const plain = recorder(false);
  const q = progress("gc x scan", undefined, { stream: plain.stream, noun: "blobs", now: () => t });
  q.update(5);
  q.log("a line\n");
  q.finish();
  assert.deepEqual(plain.out, ["gc x scan: 5 blobs\n", "a line\n"], "not a terminal: the line as it is");
});
