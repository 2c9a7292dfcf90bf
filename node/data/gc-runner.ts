/**
 * The garbage-collection runs of one node (./gc.ts collects): one at a
 * time, the last few kept in memory for the admin API, a listener per
 * finished run (node/gc-schedule.ts's metrics). `registry.gc` is one.
 */
import { collectGarbage, type GcContext, type GcProgress, type GcResult } from "./gc.js";

/** One run as the node that runs it knows it (the view's gc projection knows its start and end). */
export interface GcRunState {
  runId: string;
  region: string;
  state: "running" | "ok" | "failed";
  dryRun: boolean;
  graceMs: number;
  undeleteWindowMs: number;
  startedAt: string;
  progress: GcProgress;
  result?: Omit<GcResult, "items"> & { items: GcResult["items"] };
  error?: string;
}

export interface GcSettings {
  graceMs: number;
  undeleteWindowMs: number;
  settleMs: number;
}

/**
 * The runs of one node: one at a time (a run asked for while another runs
 * starts when it ends), the last few kept for `GET /gc/runs/:id`, and a
 * listener per finished run (the node's metrics).
 */
export class GcRuns {
  readonly #ctx: GcContext;
  readonly #settings: GcSettings;
  readonly #runs = new Map<string, GcRunState>();
  #chain: Promise<unknown> = Promise.resolve();
  readonly #stop = new AbortController();
  /** Called once per finished run (ok or failed). */
  onFinished: ((state: GcRunState) => void) | undefined;

  constructor(ctx: GcContext, settings: GcSettings) {
    this.#ctx = ctx;
    this.#settings = settings;
  }

  get settings(): Readonly<GcSettings> {
    return this.#settings;
  }

  /**
   * Start a run; resolves with its state at once (poll `get`), `done` when
   * it ends. `now`: grace and undelete window 0 for this run only.
   */
  start(o: { dryRun: boolean; now: boolean; actor: string; trigger: string }): {
    state: GcRunState;
    done: Promise<GcRunState>;
  } {
    const runId = `gc-${new Date().toISOString().replaceAll(/[:.]/g, "-")}-${Math.random().toString(36).slice(2, 8)}`;
    const graceMs = o.now ? 0 : this.#settings.graceMs;
    const undeleteWindowMs = o.now ? 0 : this.#settings.undeleteWindowMs;
    const state: GcRunState = {
      runId,
      region: this.#ctx.region,
      state: "running",
      dryRun: o.dryRun,
      graceMs,
      undeleteWindowMs,
      startedAt: new Date().toISOString(),
      progress: { phase: "mark", scanned: 0, candidates: 0, collected: 0 },
    };
    this.#runs.set(runId, state);
    while (this.#runs.size > 20) this.#runs.delete(this.#runs.keys().next().value!);
    const done = this.#chain.then(async () => {
      try {
        const result = await collectGarbage(this.#ctx, {
          runId,
          dryRun: o.dryRun,
          graceMs,
          undeleteWindowMs,
          settleMs: this.#settings.settleMs,
          actor: o.actor,
          trigger: o.trigger,
          signal: this.#stop.signal,
          onProgress: (p) => {
            state.progress = p;
          },
        });
        state.result = result;
        state.state = "ok";
      } catch (err) {
        state.state = "failed";
        state.error = (err as Error).message;
        this.#ctx.logger.error({ err, runId }, "gc run failed");
      }
      this.onFinished?.(state);
      return state;
    });
    this.#chain = done;
    return { state, done };
  }

  get(runId: string): GcRunState | undefined {
    return this.#runs.get(runId);
  }

  /** Stop a run in progress (the process stops); what it set aside is put back. */
  async stop(): Promise<void> {
    this.#stop.abort(new Error("stopping"));
    await this.#chain.catch(() => undefined);
  }
}
