/**
 * A pid lock file: `acquirePidLock(file, what)` creates `file` exclusively
 * (O_EXCL) holding this process's pid, so a second process that wants the
 * same directory refuses at once, naming the holder. A lock whose pid is no
 * longer alive (the holder was killed with SIGKILL, or the machine rebooted)
 * is stale: it is taken over. The file is removed when the lock is released
 * or the process exits normally. Contract: a pid reused by an unrelated
 * process after a SIGKILL keeps the lock held until that process exits or the
 * operator deletes the file (the message names it).
 */
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from "node:fs";

export class LockHeldError extends Error {
  constructor(
    readonly file: string,
    readonly pid: number,
    what: string,
  ) {
    super(
      `${what} is in use by process ${pid} (lock file ${file}); stop that process first, or delete the file if pid ${pid} is not Meridian`,
    );
  }
}

export interface PidLock {
  readonly file: string;
  release(): void;
}

/** The live pid holding `file`, or undefined when it is free or stale. */
export function lockHolder(file: string): number | undefined {
  let pid: number;
  try {
    pid = Number.parseInt(readFileSync(file, "utf8").trim(), 10);
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  return pidAlive(pid) ? pid : undefined;
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

export function acquirePidLock(file: string, what: string): PidLock {
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(file, "wx", 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST" || attempt >= 2) throw err;
      const holder = lockHolder(file);
      if (holder !== undefined && holder !== process.pid) throw new LockHeldError(file, holder, what);
      // Stale (its holder is gone) or our own from before: take it over.
      try {
        unlinkSync(file);
      } catch {
        // another process removed it first: try again
      }
    }
  }
  let held = true;
  const release = () => {
    if (!held) return;
    held = false;
    heldReleases.delete(release);
    try {
      if (readFileSync(file, "utf8").trim() === String(process.pid)) unlinkSync(file);
    } catch {
      // already gone
    }
  };
  heldReleases.add(release);
  if (!releasingAtExit) {
    releasingAtExit = true;
    process.once("exit", releaseAll);
  }
  return { file, release };
}

/**
 * Locks this process holds, released together at exit by one listener (a
 * process may hold many: a test's nats-servers, a mesh's stores), so their
 * number never trips Node's listener-leak warning.
 */
const heldReleases = new Set<() => void>();
let releasingAtExit = false;

function releaseAll(): void {
  for (const release of [...heldReleases]) release();
}
