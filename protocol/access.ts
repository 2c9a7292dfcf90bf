/**
 * Who may do what (issue 6, "Identities"): the access decision as one pure
 * function, the same in every region and in the front door, so a region
 * that took over another's users decides exactly as it would have.
 *
 * Projects are a repository's first path component (`team` in
 * `team/app/api`); a repository without a slash is its own project. A
 * project is public or private. Users hold roles in projects, as in Harbor:
 *
 * | role           | pull | push | delete | manage the project (members, rules) |
 * |----------------|:----:|:----:|:------:|:-----------------------------------:|
 * | projectAdmin   |  ✓   |  ✓   |   ✓    |                  ✓                  |
 * | maintainer     |  ✓   |  ✓   |   ✓    |                                     |
 * | developer      |  ✓   |  ✓   |        |                                     |
 * | guest          |  ✓   |      |        |                                     |
 * | limitedGuest   |  ✓   |      |        |                                     |
 *
 * (Harbor's guest and limited guest differ in what they see of the project
 * in its UI — members, logs — not in what they may do to artifacts.) A
 * system admin may do anything anywhere. Anyone, anonymous included, may
 * pull from a public project; nothing else is granted by visibility. A robot
 * account holds explicit grants (actions on a project, or on repositories of
 * it matched by a glob) until it expires, and never holds a role; an expired
 * robot is refused everything (its credentials are bad, which is not the same
 * as having none). Nothing is allowed that no rule allows.
 */

export type Action = "pull" | "push" | "delete" | "manage";
export const ACTIONS: readonly Action[] = ["pull", "push", "delete", "manage"];

export type Role = "projectAdmin" | "maintainer" | "developer" | "guest" | "limitedGuest";
export const ROLES: readonly Role[] = ["projectAdmin", "maintainer", "developer", "guest", "limitedGuest"];

const ROLE_ACTIONS: Readonly<Record<Role, readonly Action[]>> = {
  projectAdmin: ["pull", "push", "delete", "manage"],
  maintainer: ["pull", "push", "delete"],
  developer: ["pull", "push"],
  guest: ["pull"],
  limitedGuest: ["pull"],
};

/** Who is asking. */
export type Subject =
  | { kind: "anonymous" }
  | {
      kind: "user";
      name: string;
      systemAdmin: boolean;
      roles: Readonly<Record<string, Role>>;
      /** A read-only operator: every admin API read, no write (node/http/admin/access-gate.ts). */
      operator?: boolean;
    }
  | { kind: "robot"; name: string; expiresAt: number; grants: readonly RobotGrant[] };

/** A robot's grant: `actions` on repositories of `project` matching `repositories` (a glob; "**" for all). */
export interface RobotGrant {
  project: string;
  repositories: string;
  actions: readonly Action[];
}

export interface ProjectInfo {
  /** Anyone may pull. */
  public: boolean;
}

/** The project of a repository: its first path component. */
export function projectOf(repo: string): string {
  const slash = repo.indexOf("/");
  return slash < 0 ? repo : repo.slice(0, slash);
}

export interface Decision {
  allowed: boolean;
  /** Why, in words for an audit line or an error message. */
  reason: string;
}

/**
 * May `subject` do `action` to `repo` (whose project is described by
 * `project`, undefined when the project is unknown: private) at time `now`?
 */
export function decide(
  subject: Subject,
  action: Action,
  repo: string,
  project: ProjectInfo | undefined,
  now: number,
): Decision {
  const name = projectOf(repo);
  if (subject.kind === "user" && subject.systemAdmin) return { allowed: true, reason: "system admin" };
  if (subject.kind === "robot") {
    if (now >= subject.expiresAt) return { allowed: false, reason: `robot ${subject.name} expired` };
    const grant = subject.grants.find(
      (g) =>
        g.project === name &&
        g.actions.includes(action) &&
        globMatches(g.repositories, repo.slice(name.length + 1)),
    );
    if (grant !== undefined)
      return { allowed: true, reason: `robot grant ${action} on ${name}/${grant.repositories}` };
  }
  if (subject.kind === "user") {
    const role = subject.roles[name];
    if (role !== undefined && ROLE_ACTIONS[role].includes(action))
      return { allowed: true, reason: `${role} of ${name}` };
  }
  if (action === "pull" && project?.public === true) return { allowed: true, reason: `${name} is public` };
  const who = subject.kind === "anonymous" ? "anonymous" : `${subject.kind} ${subject.name}`;
  return { allowed: false, reason: `${who} may not ${action} in ${name}` };
}

/** The actions a subject may do to a repository (for a token's granted scope). */
export function allowedActions(
  subject: Subject,
  repo: string,
  project: ProjectInfo | undefined,
  now: number,
): Action[] {
  return ACTIONS.filter((a) => decide(subject, a, repo, project, now).allowed);
}

/** Longest repository glob a robot grant may hold (node/http/identity-routes.ts refuses longer: 400). */
export const MAX_GLOB_LENGTH = 255;

/**
 * A repository path glob: `*` matches within one path segment, `**` across
 * segments; everything else literally. A robot granted `**` covers every
 * repository of its project (the project itself included, as ""), and one
 * granted `X/**` covers X itself as well as everything under it (`app/**`:
 * team/app, team/app/api; not team/apple), as a user reads it.
 *
 * Matched by simulating the glob as an automaton over the set of positions
 * it may be at (issue 10, finding 9): O(glob × path) steps whatever the
 * input, where the regular expression this used to compile backtracked
 * exponentially (`*a*a*a*a*a*a*a*a*b` against 48 characters took 4.3 s).
 */
export function globMatches(glob: string, path: string): boolean {
  if (glob === "**") return true;
  // `X/**` covers X itself too, as `**` covers the project itself: `app/**` grants team/app and team/app/...
  if (glob.length > 3 && glob.endsWith("/**") && globMatches(glob.slice(0, -3), path)) return true;
  return matchesGlob(glob, path);
}

function matchesGlob(glob: string, path: string): boolean {
  // Tokens: a code unit to match literally, or STAR / GLOBSTAR.
  const tokens: number[] = [];
  for (let i = 0; i < glob.length; i++) {
    if (glob.charCodeAt(i) !== STAR_CODE) tokens.push(glob.charCodeAt(i));
    else if (glob.charCodeAt(i + 1) === STAR_CODE) {
      tokens.push(GLOBSTAR);
      i++;
    } else tokens.push(STAR);
  }
  const n = tokens.length;
  // at[k] === generation: the glob may be at token k (k === n: all matched).
  let at = new Uint32Array(n + 1);
  let next = new Uint32Array(n + 1);
  let generation = 1;
  const reach = (set: Uint32Array, from: number, gen: number) => {
    // A star may match nothing: reaching it reaches what follows it too.
    for (let k = from; k <= n && set[k] !== gen; k++) {
      set[k] = gen;
      if (k === n || tokens[k]! >= 0) break;
    }
  };
  reach(at, 0, generation);
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    const gen = generation + 1;
    let any = false;
    for (let k = 0; k < n; k++) {
      if (at[k] !== generation) continue;
      const t = tokens[k]!;
      if (t === GLOBSTAR || (t === STAR && c !== SLASH_CODE)) {
        reach(next, k, gen);
        any = true;
      } else if (t === c) {
        reach(next, k + 1, gen);
        any = true;
      }
    }
    if (!any) return false;
    [at, next] = [next, at];
    generation = gen;
  }
  return at[n] === generation;
}

const STAR = -1;
const GLOBSTAR = -2;
const STAR_CODE = 42;
const SLASH_CODE = 47;

/** Why `glob` cannot be a robot grant's repository glob, or undefined when it can. */
export function globProblem(glob: string): string | undefined {
  if (glob === "") return "empty";
  if (glob.length > MAX_GLOB_LENGTH) return `longer than ${MAX_GLOB_LENGTH} characters`;
  return undefined;
}

/** A Docker token scope `repository:NAME:ACTION[,ACTION…]` (other resource types are not ours). */
export interface RepositoryScope {
  repo: string;
  actions: Action[];
}

/**
 * Parse a Docker `scope` parameter (one scope; a request may repeat the
 * parameter). Unknown actions (`*` aside, which means every action) are
 * dropped, as Distribution's token servers do: the token then simply does
 * not grant them. Undefined for another resource type or a malformed scope.
 */
export function parseScope(scope: string): RepositoryScope | undefined {
  const first = scope.indexOf(":");
  const last = scope.lastIndexOf(":");
  if (first < 0 || last === first) return undefined;
  const type = scope.slice(0, first);
  if (type !== "repository") return undefined;
  const repo = scope.slice(first + 1, last);
  if (repo === "") return undefined;
  const asked = scope.slice(last + 1).split(",");
  const actions = asked.includes("*")
    ? [...ACTIONS.filter((a) => a !== "manage")]
    : ACTIONS.filter((a) => a !== "manage" && asked.includes(a));
  return { repo, actions };
}
