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
  | { kind: "user"; name: string; systemAdmin: boolean; roles: Readonly<Record<string, Role>> }
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

/**
 * A repository path glob: `*` matches within one path segment, `**` across
 * segments; everything else literally. A robot granted `**` covers every
 * repository of its project (the project itself included, as "").
 */
export function globMatches(glob: string, path: string): boolean {
  if (glob === "**") return true;
  let re = "^";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === "*" && glob[i + 1] === "*") {
      re += ".*";
      i++;
    } else if (c === "*") re += "[^/]*";
    else re += c.replace(/[.+?^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`${re}$`).test(path);
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
