/**
 * Region data is private to the user Meridian runs as (issue 10, finding
 * 10): views hold password hashes, the blob store holds private layers.
 * Every Meridian process calls `privateDirs` at start with the directories
 * it owns: from then on it creates files 0600 and directories 0700 (umask
 * 077, inherited by the processes it starts, nats-server included), and the
 * directories given are made (if missing) and set to 0700 even when an
 * older version left them 0755: nothing below a 0700 directory can be
 * reached by another user, whatever the modes of the files in it.
 */
import { chmodSync, mkdirSync } from "node:fs";

export function privateDirs(dirs: readonly string[]): void {
  process.umask(0o077);
  for (const dir of dirs) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
  }
}
