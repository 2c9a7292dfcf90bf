/**
 * How every Meridian process stops: the start/stop code the entry points
 * (node/server.ts, control-plane/peer.ts, control-plane/front-door.ts,
 * replication/main.ts, and `meridian up` in cli/up.ts) share, on top of
 * close-with-grace.
 *
 * - SIGINT/SIGTERM stop the process gracefully: `stop` runs once, then the
 *   process exits 0, or 1 when `stop` failed or did not finish within
 *   `graceMs` (a stop that hangs must not keep a supervisor waiting; a service
 *   is given STOP_GRACE_MS, under the 10 s after which `meridian up` kills a
 *   child). A second signal while stopping exits 1 at once.
 * - An uncaught exception or unhandled rejection is logged (fatal) and stops
 *   the process the same way, exiting 1 (Node's own default exits 1 too, but
 *   without closing anything).
 * - SIGHUP never stops a service (a stray one, such as the kernel's to an
 *   orphaned process group with a stopped member, must not): it re-reads the
 *   TLS files where a reload hook is given, else it is only logged. For
 *   `meridian up` it is a stop signal like the others (`hangup: "stop"`).
 * - Other signals keep Node's defaults (close-with-grace would take SIGQUIT,
 *   SIGUSR2 and the fault signals too: skipped, so nothing changes there).
 *
 * `serveUntilStopped` adds what every service does once started: the parent
 * watch (./parent-watch.ts) and then, only once every handler is in place,
 * the `{"event":"listening",…}` line a supervisor waits for (it may signal
 * at once; issue 11). Tests that start services in-process never call these.
 *
 * close-with-grace fits as is: its signal and error handling, bound and second
 * signal are what the entry points did by hand (without the bound, and with
 * the second signal ignored); only the skip list and the logging are ours.
 */
import { pathToFileURL } from "node:url";
import closeWithGrace from "close-with-grace";
import type { Logger } from "pino";
import { exitWithParent } from "./parent-watch.js";

/** How long a service's graceful stop may take before it exits 1 anyway (under `up`'s 10 s SIGKILL). */
export const STOP_GRACE_MS = 8_000;

type StopEvent = "SIGINT" | "SIGTERM" | "SIGHUP" | "uncaughtException" | "unhandledRejection";
const STOP_EVENTS: StopEvent[] = ["SIGINT", "SIGTERM", "SIGHUP", "uncaughtException", "unhandledRejection"];
const ALL_EVENTS: closeWithGrace.AllEvents[] = [
  "SIGHUP",
  "SIGINT",
  "SIGQUIT",
  "SIGILL",
  "SIGTRAP",
  "SIGABRT",
  "SIGBUS",
  "SIGFPE",
  "SIGSEGV",
  "SIGUSR2",
  "SIGTERM",
  "uncaughtException",
  "unhandledRejection",
  "beforeExit",
];

/** Where the second signal, a timeout, an uncaught error and a failed stop are logged (a pino logger fits). */
export interface StopLogger {
  error(fields: object, message: string): void;
  fatal(fields: object, message: string): void;
}

export interface StopSignalsOptions {
  logger: StopLogger;
  /** Bound on `stop` before the process exits 1 anyway; `false`: none (the caller bounds it). */
  graceMs: number | false;
  /** SIGHUP: "stop" as SIGINT/SIGTERM do, or a hook that handles it without stopping. */
  hangup: "stop" | (() => void);
  /**
   * Stops everything; runs once. Resolving exits 0 (1 after an uncaught
   * error), rejecting exits 1. It may also exit itself with a code of its own.
   */
  stop: (why: { signal?: string; err?: Error }) => Promise<void>;
}

/** Install the stop handlers (see the header). */
export function handleStopSignals(options: StopSignalsOptions): void {
  const { logger } = options;
  const stopOn = STOP_EVENTS.filter((e) => e !== "SIGHUP" || options.hangup === "stop");
  closeWithGrace(
    {
      delay: options.graceMs,
      logger: false,
      skip: ALL_EVENTS.filter((e) => !(stopOn as string[]).includes(e)),
      onSecondSignal: (signal) => logger.error({ signal }, "second signal while stopping: exiting now"),
      onSecondError: (err) => logger.fatal({ err }, "uncaught error while stopping: exiting now"),
      onTimeout: (delay) => logger.error({ graceMs: delay }, "stop did not finish in time: exiting now"),
    },
    async ({ signal, err }) => {
      if (err !== undefined) logger.fatal({ err }, "uncaught error: stopping");
      try {
        await options.stop({ signal, err });
      } catch (stopErr) {
        logger.error({ err: stopErr }, "stop failed");
        throw stopErr;
      }
    },
  );
  const hangup = options.hangup;
  if (hangup !== "stop") process.on("SIGHUP", () => hangup());
}

export interface ServeOptions {
  /** The process's name in its logs ("node", "peer", …). */
  name: string;
  logger: Logger;
  /** The listening line's fields (between `"event":"listening"` and the pid). */
  listening: Record<string, unknown>;
  /** SIGHUP re-reads the TLS files (throws if unreadable); without it SIGHUP is only logged. */
  reloadTls?: () => void;
}

/**
 * A started service runs until a stop signal: handlers installed, parent
 * watched, and only then the listening line on stdout.
 */
export function serveUntilStopped(service: { close(): Promise<void> }, options: ServeOptions): void {
  const { logger, name, reloadTls } = options;
  handleStopSignals({
    logger,
    graceMs: STOP_GRACE_MS,
    hangup: () => {
      if (reloadTls === undefined) return logger.info("SIGHUP: nothing to reload");
      try {
        reloadTls();
        logger.info("tls certificate reloaded");
      } catch (err) {
        logger.error({ err }, "tls certificate reload failed; serving the previous one");
      }
    },
    stop: async ({ signal }) => {
      if (signal !== undefined) logger.info({ signal }, `${name} stopping`);
      await service.close();
    },
  });
  exitWithParent(); // issue 11: dies with `meridian up`, even a SIGKILLed one
  // Ready only now that every signal handler is in place: a supervisor may signal at once.
  process.stdout.write(`${JSON.stringify({ event: "listening", ...options.listening, pid: process.pid })}\n`);
}

/**
 * Run `main` when `moduleUrl` is the script Node was started with (not when
 * imported, as tests do); a failure to start prints "NAME failed: STACK" and
 * exits 1.
 */
export function runIfMain(moduleUrl: string, name: string, main: () => Promise<void>): void {
  if (process.argv[1] === undefined || moduleUrl !== pathToFileURL(process.argv[1]).href) return;
  main().catch((err) => {
    process.stderr.write(`${name} failed: ${err?.stack ?? err}\n`);
    process.exit(1);
  });
}
