/**
 * The logger of each request (`request.log`), made only when the request logs.
 *
 * fastify gives every request a pino child logger bound to its request id;
 * making one (pino's `child` with Meridian's redaction, protocol/logging.ts)
 * costs about as much as a small request's routing. With request logging off,
 * almost no request ever logs (a 5xx, an error fastify reports), so the child
 * is made on the first log call and never otherwise: `lazyRequestLogger` is
 * fastify's `childLoggerFactory`. What a request logs is unchanged (the same
 * child, the same bindings and options).
 */
import type { FastifyBaseLogger, LogLevel } from "fastify";
import type { Bindings, ChildLoggerOptions } from "pino";

class LazyChild implements FastifyBaseLogger {
  readonly #parent: FastifyBaseLogger;
  readonly #bindings: Bindings;
  readonly #options: ChildLoggerOptions;
  #made: FastifyBaseLogger | undefined;

  constructor(parent: FastifyBaseLogger, bindings: Bindings, options: ChildLoggerOptions) {
    this.#parent = parent;
    this.#bindings = bindings;
    this.#options = options;
  }

  #child(): FastifyBaseLogger {
    this.#made ??= this.#parent.child(this.#bindings, this.#options);
    return this.#made;
  }

  get level(): LogLevel {
    return (this.#made ?? this.#parent).level as LogLevel;
  }
  set level(level: LogLevel) {
    this.#child().level = level;
  }

  #log(level: LogLevel, args: unknown[]): void {
    const child = this.#child();
    (child[level] as (...a: unknown[]) => void).apply(child, args);
  }

  fatal(...args: unknown[]): void {
    this.#log("fatal", args);
  }
  error(...args: unknown[]): void {
    this.#log("error", args);
  }
  warn(...args: unknown[]): void {
    this.#log("warn", args);
  }
  info(...args: unknown[]): void {
    this.#log("info", args);
  }
  debug(...args: unknown[]): void {
    this.#log("debug", args);
  }
  trace(...args: unknown[]): void {
    this.#log("trace", args);
  }
  silent(...args: unknown[]): void {
    this.#log("silent", args);
  }

  child(bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
    return this.#child().child(bindings, options);
  }
}

/** fastify's `childLoggerFactory`: the request's child logger, made on first use. */
export function lazyRequestLogger(
  logger: FastifyBaseLogger,
  bindings: Bindings,
  options: ChildLoggerOptions,
): FastifyBaseLogger {
  return new LazyChild(logger, bindings, options);
}
