/**
 * `meridian region stop|start NAME [--only ROLES] [--data DIR]`: ask the `meridian up`
 * running on DIR (default .meridian) to stop a region's processes and hold
 * them down, or to start them again, through the control endpoint named in
 * DIR/up.json (./supervisor.ts). Prints the progress lines `up` sends and
 * returns once it is done: 0 done, 1 failed (or no `up` running there).
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { createInterface } from "node:readline";
import { Readable } from "node:stream";
import { type ControlState, controlFile } from "./supervisor.js";

export async function region(action: string, name: string, dataDir: string, only?: string): Promise<number> {
  const file = controlFile(resolve(dataDir));
  let state: ControlState;
  try {
    state = JSON.parse(readFileSync(file, "utf8")) as ControlState;
  } catch (err) {
    process.stderr.write(
      `meridian region: no running 'meridian up' found on ${resolve(dataDir)} (${(err as Error).message})\n` +
        `  start one with 'npm start' (or 'meridian up --data DIR'), or pass the --data DIR of the one running\n`,
    );
    return 1;
  }
  let res: Response;
  try {
    const query = only === undefined ? "" : `?only=${encodeURIComponent(only)}`;
    res = await fetch(`${state.control}/regions/${encodeURIComponent(name)}/${action}${query}`, {
      method: "POST",
      headers: { authorization: `Bearer ${state.token}` },
    });
  } catch (err) {
    process.stderr.write(
      `meridian region: 'meridian up' (pid ${state.pid}) does not answer at ${state.control}: ${(err as Error).cause ?? err}\n` +
        `  it may have stopped without removing ${file}: start it again with 'npm start' (or 'meridian up --data DIR')\n`,
    );
    return 1;
  }
  if (res.status !== 200 || res.body === null) {
    process.stderr.write(
      `meridian region: 'meridian up' refused: HTTP ${res.status}${res.status === 404 ? ` (is "${name}" one of its regions? 'meridian status' lists them)` : ""}\n`,
    );
    return 1;
  }
  let code = 1;
  const lines = createInterface({
    input: Readable.fromWeb(res.body as import("node:stream/web").ReadableStream),
  });
  for await (const line of lines) {
    if (line === "") continue;
    const msg = JSON.parse(line) as { progress?: string; done?: boolean; error?: string };
    if (msg.progress !== undefined) process.stdout.write(`${msg.progress}\n`);
    if (msg.done === true) {
      process.stdout.write(`region ${name}: ${action === "stop" ? "stopped" : "started"}\n`);
      code = 0;
    }
    if (msg.error !== undefined) process.stderr.write(`meridian region: ${msg.error}\n`);
  }
  return code;
}
