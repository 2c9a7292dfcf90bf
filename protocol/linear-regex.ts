/**
 * Regular expressions matched in polynomial time (issue 10, finding 9, "fix
 * the class"): V8 backtracks, so a policy's glob (picomatch compiles globs
 * to regular expressions) or `regex:` tag matcher can take seconds to
 * exponential time on a name a client chose: picomatch's regex for
 * `*a*a*a*a*a*a*a*a*b` took 5 s against a 48-character tag. `linearRegex`
 * compiles the same source to a Thompson automaton and simulates it over
 * sets of states (a Pike VM without captures), so a test costs
 * O(pattern × input) steps, lookaheads at most one more factor of the input;
 * the answer is `RegExp.prototype.test`'s (protocol/test/linear-regex.test.ts
 * compares them).
 *
 * Supported (everything picomatch emits, and the usual tag regexes):
 * literals and escapes, `.`, classes `[...]` / `[^...]` with ranges and
 * `\d \w \s` (and their negations), groups `(...)` `(?:...)`, alternation,
 * `* + ? {n} {n,} {n,m}` (greedy or lazy: the same for a yes/no answer),
 * `^ $`, and lookaheads `(?=...)` `(?!...)`. Anything else (flags,
 * backreferences, lookbehinds, named groups, `\b`, unicode escapes) answers
 * undefined: the caller keeps the RegExp.
 *
 * Pure: no IO, no clock.
 */

type CharTest = (c: number) => boolean;

/** A node of the automaton. */
type Node =
  | { kind: "char"; test: CharTest; next: number }
  | { kind: "split"; a: number; b: number }
  | { kind: "jump"; next: number }
  | { kind: "bol"; next: number }
  | { kind: "eol"; next: number }
  | { kind: "look"; negate: boolean; start: number; next: number }
  | { kind: "match" };

/** Repetitions expanded at most this many times (`{n,m}`); more: unsupported. */
const MAX_REPEAT = 1000;
/** Automata larger than this are not built (unsupported). */
const MAX_NODES = 20_000;

class Unsupported extends Error {}

/** A tester for `new RegExp(source, flags).test`, or undefined when the source is not supported. */
export function linearRegex(source: string, flags = ""): ((input: string) => boolean) | undefined {
  if (flags !== "") return undefined;
  let program: Node[];
  let start: number;
  try {
    const ast = new Parser(source).parse();
    program = [];
    const builder = new Builder(program);
    const match = builder.push({ kind: "match" });
    start = builder.build(ast, match);
  } catch (err) {
    if (err instanceof Unsupported) return undefined;
    throw err;
  }
  return (input) => new Run(program, input).search(start);
}

// ------------------------------------------------------------ parsing

type Ast =
  | { t: "char"; test: CharTest }
  | { t: "seq"; items: Ast[] }
  | { t: "alt"; options: Ast[] }
  | { t: "repeat"; item: Ast; min: number; max: number }
  | { t: "bol" }
  | { t: "eol" }
  | { t: "look"; negate: boolean; item: Ast };

const isDigit: CharTest = (c) => c >= 48 && c <= 57;
const isWord: CharTest = (c) => isDigit(c) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
const isSpace: CharTest = (c) =>
  c === 32 ||
  (c >= 9 && c <= 13) ||
  c === 0xa0 ||
  c === 0x1680 ||
  (c >= 0x2000 && c <= 0x200a) ||
  c === 0x2028 ||
  c === 0x2029 ||
  c === 0x202f ||
  c === 0x205f ||
  c === 0x3000 ||
  c === 0xfeff;
const isLineEnd: CharTest = (c) => c === 10 || c === 13 || c === 0x2028 || c === 0x2029;

class Parser {
  #i = 0;
  constructor(private readonly s: string) {}

  parse(): Ast {
    const ast = this.#alternation();
    if (this.#i !== this.s.length) throw new Unsupported(`unexpected ${this.s[this.#i]}`);
    return ast;
  }

  #alternation(): Ast {
    const options = [this.#sequence()];
    while (this.s[this.#i] === "|") {
      this.#i++;
      options.push(this.#sequence());
    }
    return options.length === 1 ? options[0]! : { t: "alt", options };
  }

  #sequence(): Ast {
    const items: Ast[] = [];
    while (this.#i < this.s.length && this.s[this.#i] !== "|" && this.s[this.#i] !== ")") {
      let atom = this.#atom();
      for (;;) {
        const q = this.#quantifier();
        if (q === undefined) break;
        if (atom.t === "bol" || atom.t === "eol" || atom.t === "look")
          throw new Unsupported("quantified assertion");
        atom = { t: "repeat", item: atom, ...q };
      }
      items.push(atom);
    }
    return items.length === 1 ? items[0]! : { t: "seq", items };
  }

  #quantifier(): { min: number; max: number } | undefined {
    const c = this.s[this.#i];
    let q: { min: number; max: number } | undefined;
    if (c === "*") q = { min: 0, max: Number.POSITIVE_INFINITY };
    else if (c === "+") q = { min: 1, max: Number.POSITIVE_INFINITY };
    else if (c === "?") q = { min: 0, max: 1 };
    else if (c === "{") {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(this.s.slice(this.#i));
      if (m === null) throw new Unsupported("a lone {");
      const min = Number(m[1]);
      const max = m[2] === undefined ? min : m[3] === "" ? Number.POSITIVE_INFINITY : Number(m[3]);
      if (min > MAX_REPEAT || (max !== Number.POSITIVE_INFINITY && max > MAX_REPEAT) || max < min)
        throw new Unsupported("repeat bounds");
      this.#i += m[0].length - 1;
      q = { min, max };
    }
    if (q === undefined) return undefined;
    this.#i++;
    if (this.s[this.#i] === "?") this.#i++; // lazy: the same yes/no answer
    return q;
  }

  #atom(): Ast {
    const c = this.s[this.#i]!;
    this.#i++;
    switch (c) {
      case "^":
        return { t: "bol" };
      case "$":
        return { t: "eol" };
      case ".":
        return { t: "char", test: (x) => !isLineEnd(x) };
      case "[":
        return { t: "char", test: this.#class() };
      case "\\":
        return { t: "char", test: this.#escape(false) };
      case "(": {
        let look: boolean | undefined;
        if (this.s.startsWith("?:", this.#i)) this.#i += 2;
        else if (this.s.startsWith("?=", this.#i) || this.s.startsWith("?!", this.#i)) {
          look = this.s[this.#i + 1] === "!";
          this.#i += 2;
        } else if (this.s[this.#i] === "?") throw new Unsupported("group kind");
        const item = this.#alternation();
        if (this.s[this.#i] !== ")") throw new Unsupported("unclosed group");
        this.#i++;
        return look === undefined ? item : { t: "look", negate: look, item };
      }
      case ")":
      case "*":
      case "+":
      case "?":
      case "{":
      case "}":
      case "]":
      case "|":
        throw new Unsupported(`bare ${c}`);
      default: {
        const code = c.charCodeAt(0);
        return { t: "char", test: (x) => x === code };
      }
    }
  }

  /** After a backslash: the character test it stands for. */
  #escape(inClass: boolean): CharTest {
    const c = this.s[this.#i];
    if (c === undefined) throw new Unsupported("trailing backslash");
    this.#i++;
    switch (c) {
      case "d":
        return isDigit;
      case "D":
        return (x) => !isDigit(x);
      case "w":
        return isWord;
      case "W":
        return (x) => !isWord(x);
      case "s":
        return isSpace;
      case "S":
        return (x) => !isSpace(x);
      case "n":
        return (x) => x === 10;
      case "r":
        return (x) => x === 13;
      case "t":
        return (x) => x === 9;
      case "f":
        return (x) => x === 12;
      case "v":
        return (x) => x === 11;
      case "0":
        if (!/[0-9]/.test(this.s[this.#i] ?? "")) return (x) => x === 0;
        throw new Unsupported("octal");
      default: {
        // Only escapes of punctuation stand for themselves; letters and digits mean something else.
        if (/[A-Za-z0-9]/.test(c)) throw new Unsupported(`\\${c}`);
        if (inClass && c === "-") return (x) => x === 45;
        const code = c.charCodeAt(0);
        return (x) => x === code;
      }
    }
  }

  #class(): CharTest {
    let negate = false;
    if (this.s[this.#i] === "^") {
      negate = true;
      this.#i++;
    }
    const parts: CharTest[] = [];
    while (this.s[this.#i] !== "]") {
      if (this.#i >= this.s.length) throw new Unsupported("unclosed class");
      const single = this.#classAtom();
      if (this.s[this.#i] === "-" && this.s[this.#i + 1] !== "]" && this.#i + 1 < this.s.length) {
        this.#i++;
        const to = this.#classAtom();
        if (single.code === undefined || to.code === undefined) throw new Unsupported("class range of a set");
        const lo = single.code;
        const hi = to.code;
        if (lo > hi) throw new Unsupported("range out of order");
        parts.push((x) => x >= lo && x <= hi);
      } else parts.push(single.test);
    }
    this.#i++;
    return negate ? (x) => !parts.some((p) => p(x)) : (x) => parts.some((p) => p(x));
  }

  #classAtom(): { test: CharTest; code?: number } {
    const c = this.s[this.#i]!;
    this.#i++;
    if (c === "\\") {
      const before = this.#i;
      const next = this.s[before];
      const test = this.#escape(true);
      if (next !== undefined && !/[dDwWsS]/.test(next)) {
        const code = { n: 10, r: 13, t: 9, f: 12, v: 11, "0": 0 }[next] ?? next.charCodeAt(0);
        return { test, code };
      }
      return { test };
    }
    if (c === "[") throw new Unsupported("nested [");
    const code = c.charCodeAt(0);
    return { test: (x) => x === code, code };
  }
}

// ------------------------------------------------------------ building

class Builder {
  constructor(private readonly program: Node[]) {}

  push(node: Node): number {
    if (this.program.length >= MAX_NODES) throw new Unsupported("too large");
    this.program.push(node);
    return this.program.length - 1;
  }

  /** Nodes for `ast` that continue at `next`; returns the entry. */
  build(ast: Ast, next: number): number {
    switch (ast.t) {
      case "char":
        return this.push({ kind: "char", test: ast.test, next });
      case "bol":
        return this.push({ kind: "bol", next });
      case "eol":
        return this.push({ kind: "eol", next });
      case "look": {
        const match = this.push({ kind: "match" });
        const start = this.build(ast.item, match);
        return this.push({ kind: "look", negate: ast.negate, start, next });
      }
      case "seq": {
        let entry = next;
        for (let i = ast.items.length - 1; i >= 0; i--) entry = this.build(ast.items[i]!, entry);
        return entry;
      }
      case "alt": {
        const entries = ast.options.map((o) => this.build(o, next));
        let entry = entries[entries.length - 1]!;
        for (let i = entries.length - 2; i >= 0; i--)
          entry = this.push({ kind: "split", a: entries[i]!, b: entry });
        return entry;
      }
      case "repeat": {
        let entry = next;
        if (ast.max === Number.POSITIVE_INFINITY) {
          // A loop: split → item → back to the split, or on.
          const split = this.push({ kind: "split", a: -1, b: next });
          const body = this.build(ast.item, split);
          (this.program[split] as { a: number }).a = body;
          entry = split;
        } else {
          for (let i = ast.min; i < ast.max; i++) {
            const body = this.build(ast.item, entry);
            entry = this.push({ kind: "split", a: body, b: next });
            next = entry;
          }
        }
        for (let i = 0; i < ast.min; i++) entry = this.build(ast.item, entry);
        return entry;
      }
    }
  }
}

// ------------------------------------------------------------ running

class Run {
  /** Lookahead answers by node and position (each computed once). */
  readonly #looks = new Map<number, boolean>();

  constructor(
    private readonly program: Node[],
    private readonly input: string,
  ) {}

  /** Whether a match starts anywhere (RegExp.test). */
  search(start: number): boolean {
    return this.#simulate(start, 0, true);
  }

  /**
   * Simulate from `start` at `from`; true as soon as `match` is reached.
   * `anywhere`: a new thread also starts at every later position (search).
   */
  #simulate(start: number, from: number, anywhere: boolean): boolean {
    const n = this.program.length;
    let current: number[] = [];
    let next: number[] = [];
    const seen = new Uint32Array(n);
    let stamp = 0;
    const add = (list: number[], pc: number, at: number): boolean => {
      // Depth-first over epsilon moves; `seen` keeps each node once per step.
      const stack = [pc];
      while (stack.length > 0) {
        const p = stack.pop()!;
        if (seen[p] === stamp) continue;
        seen[p] = stamp;
        const node = this.program[p]!;
        switch (node.kind) {
          case "match":
            return true;
          case "char":
            list.push(p);
            break;
          case "jump":
            stack.push(node.next);
            break;
          case "split":
            stack.push(node.b, node.a);
            break;
          case "bol":
            if (at === 0) stack.push(node.next);
            break;
          case "eol":
            if (at === this.input.length) stack.push(node.next);
            break;
          case "look":
            if (this.#look(p, node.start, at) !== node.negate) stack.push(node.next);
            break;
        }
      }
      return false;
    };
    stamp++;
    if (add(current, start, from)) return true;
    for (let i = from; i < this.input.length; i++) {
      const c = this.input.charCodeAt(i);
      stamp++;
      next.length = 0;
      for (const p of current) {
        const node = this.program[p] as { kind: "char"; test: CharTest; next: number };
        if (node.test(c) && add(next, node.next, i + 1)) return true;
      }
      if (anywhere && add(next, start, i + 1)) return true;
      [current, next] = [next, current];
      if (current.length === 0 && !anywhere) return false;
    }
    return false;
  }

  #look(node: number, start: number, at: number): boolean {
    const key = node * (this.input.length + 1) + at;
    let answer = this.#looks.get(key);
    if (answer === undefined) {
      answer = new Run(this.program, this.input).#simulate(start, at, false);
      this.#looks.set(key, answer);
    }
    return answer;
  }
}
