/**
 * Work for one key run one at a time, in call order, within this process
 * (an upload's appends and its commit, in both blob stores): `run(key, work)`
 * starts `work` once every earlier call for `key` has settled, whatever its
 * outcome. Keys with nothing queued hold no entry.
 */
export class PerKeySerial {
  readonly #tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    const next = previous.then(work, work);
    const settled = next.catch(() => undefined);
    this.#tails.set(key, settled);
    void settled.then(() => {
      if (this.#tails.get(key) === settled) this.#tails.delete(key);
    });
    return next;
  }
}
