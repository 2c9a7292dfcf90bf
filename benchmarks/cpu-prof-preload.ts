/**
 * `--cpu-prof` for processes the benchmark does not spawn itself (the mesh's
 * node, peer and worker, started by `meridian up`): Node refuses `--cpu-prof`
 * in NODE_OPTIONS, so replication.ts passes `--import <this file>` there
 * instead, with MERIDIAN_BENCH_PROFILE_DIR. The profiler starts on import and
 * the profile is written when the process exits, as
 * `<dir>/<entry>-<region>-<pid>.cpuprofile` (open it in Chrome DevTools).
 */
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector";
import { basename, dirname, join } from "node:path";

const dir = process.env.MERIDIAN_BENCH_PROFILE_DIR;
const entry = process.argv[1] ?? "";
// Only Meridian's processes; not the CLI (`bin/meridian`) nor anything else started with this environment.
if (dir && /\/dist\/(node|control-plane|replication)\//.test(entry)) {
  const session = new Session();
  session.connect();
  session.post("Profiler.enable");
  session.post("Profiler.start");
  let written = false;
  process.on("exit", () => {
    if (written) return;
    written = true;
    // The in-process inspector session answers synchronously.
    session.post("Profiler.stop", (err, result) => {
      if (err) return;
      const name = `${basename(dirname(entry))}-${basename(entry, ".js")}-${process.env.MERIDIAN_REGION ?? "x"}-${process.pid}`;
      writeFileSync(join(dir, `${name}.cpuprofile`), JSON.stringify(result.profile));
    });
  });
}
