/**
 * Exit with the supervisor: with MERIDIAN_PARENT_PID set (`meridian up` sets
 * it to its own pid), a process checks twice a second that its parent is
 * still that pid and, once it is not (the supervisor died, even by SIGKILL,
 * and the process was re-parented), sends itself SIGTERM so its ordinary
 * graceful shutdown runs. Without the variable it does nothing. Once per
 * process: a second call (node/server.ts watches from its start, and again
 * through node/lifecycle.ts) does nothing, so one parent's loss is one SIGTERM
 * (a second would force the exit).
 */
let watching = false;
export function exitWithParent(env: NodeJS.ProcessEnv = process.env): void {
  if (watching) return;
  const expected = Number(env.MERIDIAN_PARENT_PID);
  if (!Number.isInteger(expected) || expected <= 1) return;
  watching = true;
  const timer = setInterval(() => {
    if (process.ppid === expected) return;
    clearInterval(timer);
    process.kill(process.pid, "SIGTERM");
  }, 500);
  timer.unref();
}
