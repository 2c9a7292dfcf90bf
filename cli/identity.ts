/**
 * Users, robot accounts and projects from the command line (README
 * "Users, robots and roles"), through a region's admin API
 * (node/http/identity-routes.ts); identities are events, so the change
 * reaches every region. Secrets: a password is read from a file
 * (`--password-file`), or generated and printed once; a robot's secret is
 * printed once, or written to `--secret-file` (mode 0600) instead.
 */
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { ROLES } from "../protocol/access.js";
import { type Command, type Context, JSON_OPT, printJson, readSecret, UsageError } from "./admin-client.js";
import { table } from "./table.js";

export const IDENTITY_USAGE = `  whoami                          who the credentials in use belong to, and their roles
  user list                       users, whether system admin or operator, and their roles
  user add NAME [--admin] [--operator] [--password-file F]
                                  create or update a user; without F a password is generated
                                  and printed once; --operator: a read-only operator (every
                                  admin read and the dashboard, no change)
  user operator NAME on|off       grant or revoke the read-only operator role
  user delete NAME
  user revoke-tokens NAME         end every token issued to NAME until now, in every region within
                                  a second (the password keeps working: change it to end that too)
  robot create NAME --project P --actions pull[,push,delete] [--repos GLOB] [--expires 30d]
                                  [--secret-file F]   a robot account; its secret is printed once
                                  (or written to F); creating an existing name rotates the secret
  robot list | robot delete NAME
  robot revoke-tokens NAME        end the robot's live tokens (rotate its secret to end the secret)
  project list                    projects, their visibility and members
  project set NAME --public|--private
  project member PROJECT USER ROLE|none
                                  ROLE: ${ROLES.join(", ")}
`;

const enc = encodeURIComponent;

async function whoami(ctx: Context): Promise<number> {
  const me = await ctx.api().get<{
    name: string;
    kind: string;
    systemAdmin: boolean;
    operator?: boolean;
    roles: Record<string, string>;
  }>("/whoami");
  if (ctx.json) return printJson(me);
  const roles = Object.entries(me.roles).map(([p, r]) => `${p}:${r}`);
  const role = me.systemAdmin ? ", system admin" : me.operator === true ? ", operator (read-only)" : "";
  process.stdout.write(`${me.name} (${me.kind}${role})${roles.length > 0 ? ` ${roles.join(" ")}` : ""}\n`);
  return 0;
}

async function userList(ctx: Context): Promise<number> {
  const { users } = await ctx.api().get<{
    users: Array<{ name: string; systemAdmin: boolean; operator?: boolean; roles: Record<string, string> }>;
  }>("/users");
  if (ctx.json) return printJson({ users });
  const rows = users.map((u) => [
    u.name,
    u.systemAdmin ? "yes" : "",
    u.operator === true ? "yes" : "",
    Object.entries(u.roles)
      .map(([p, r]) => `${p}:${r}`)
      .join(" "),
  ]);
  process.stdout.write(table([["USER", "ADMIN", "OPERATOR", "ROLES"], ...rows]));
  return 0;
}

async function userAdd(ctx: Context): Promise<number> {
  const [name] = ctx.positionals as [string];
  const file = ctx.values["password-file"] as string | undefined;
  const generated = file === undefined ? randomBytes(18).toString("base64url") : undefined;
  const password = generated ?? readSecret(file!);
  const api = ctx.api();
  // Changing one's own password needs the current one: the one this CLI signed in with.
  const signedIn = basicCredentials(api.authorization);
  const reply = await api.send<{ name: string; systemAdmin: boolean; operator?: boolean; seq: number }>(
    "PUT",
    `/users/${enc(name)}`,
    {
      json: {
        password,
        ...(signedIn?.name === name ? { oldPassword: signedIn.password } : {}),
        ...(ctx.values.admin === true ? { systemAdmin: true } : {}),
        ...(ctx.values.operator === true ? { operator: true } : {}),
      },
    },
  );
  if (ctx.json) return printJson({ ...reply, ...(generated === undefined ? {} : { password: generated }) });
  const role = reply.systemAdmin
    ? " (system admin)"
    : reply.operator === true
      ? " (operator, read-only)"
      : "";
  process.stdout.write(`user ${reply.name} saved${role}\n`);
  if (generated !== undefined) process.stdout.write(`password (shown once): ${generated}\n`);
  return 0;
}

async function userOperator(ctx: Context): Promise<number> {
  const [name, onOff] = ctx.positionals as [string, string];
  if (onOff !== "on" && onOff !== "off") throw new UsageError(`want on or off, got "${onOff}"`);
  const reply = await ctx.api().send<{ name: string; operator: boolean }>("PUT", `/users/${enc(name)}`, {
    json: { operator: onOff === "on" },
  });
  process.stdout.write(`user ${reply.name} ${reply.operator ? "is" : "is no longer"} a read-only operator\n`);
  return 0;
}

async function userDelete(ctx: Context): Promise<number> {
  const [name] = ctx.positionals as [string];
  await ctx.api().send("DELETE", `/users/${enc(name)}`);
  process.stdout.write(`user ${name} deleted\n`);
  return 0;
}

async function revokeTokens(ctx: Context, path: string): Promise<number> {
  const reply = await ctx.api().send<{ name: string; before: string; seq: number }>("POST", path);
  if (ctx.json) return printJson(reply);
  process.stdout.write(`tokens of ${reply.name} issued until ${reply.before} are revoked\n`);
  return 0;
}

async function robotCreate(ctx: Context): Promise<number> {
  const [name] = ctx.positionals as [string];
  const project = ctx.values.project as string | undefined;
  const actions = (ctx.values.actions as string | undefined)?.split(",").map((a) => a.trim());
  if (project === undefined || actions === undefined)
    throw new UsageError("--project and --actions are required");
  const reply = await ctx.api().send<{ name: string; secret: string; expiresAt: string }>("POST", "/robots", {
    json: {
      name,
      grants: [{ project, repositories: (ctx.values.repos as string | undefined) ?? "**", actions }],
      expiresInDays: days(ctx.values.expires as string),
    },
  });
  const secretFile = ctx.values["secret-file"] as string | undefined;
  if (secretFile !== undefined) writeFileSync(secretFile, `${reply.secret}\n`, { mode: 0o600 });
  if (ctx.json)
    return printJson(secretFile === undefined ? reply : { ...reply, secret: undefined, secretFile });
  process.stdout.write(`robot ${reply.name} valid until ${reply.expiresAt}\n`);
  process.stdout.write(
    secretFile === undefined ? `secret (shown once): ${reply.secret}\n` : `secret written to ${secretFile}\n`,
  );
  return 0;
}

async function robotList(ctx: Context): Promise<number> {
  const { robots } = await ctx.api().get<{
    robots: Array<{
      name: string;
      expiresAt: string;
      expired: boolean;
      grants: Array<{ project: string; repositories: string; actions: string[] }>;
    }>;
  }>("/robots");
  if (ctx.json) return printJson({ robots });
  const rows = robots.map((r) => [
    r.name,
    r.expired ? `expired ${r.expiresAt}` : r.expiresAt,
    r.grants.map((g) => `${g.project}/${g.repositories}:${g.actions.join(",")}`).join(" "),
  ]);
  process.stdout.write(table([["ROBOT", "EXPIRES", "GRANTS"], ...rows]));
  return 0;
}

async function robotDelete(ctx: Context): Promise<number> {
  const [name] = ctx.positionals as [string];
  const full = name.startsWith("robot$") ? name : `robot$${name}`;
  await ctx.api().send("DELETE", `/robots/${enc(full)}`);
  process.stdout.write(`robot ${full} deleted\n`);
  return 0;
}

async function projectList(ctx: Context): Promise<number> {
  const { projects } = await ctx.api().get<{
    projects: Array<{ name: string; public: boolean; members: Array<{ user: string; role: string }> }>;
  }>("/projects");
  if (ctx.json) return printJson({ projects });
  const rows = projects.map((p) => [
    p.name,
    p.public ? "public" : "private",
    p.members.map((m) => `${m.user}:${m.role}`).join(" "),
  ]);
  process.stdout.write(table([["PROJECT", "VISIBILITY", "MEMBERS"], ...rows]));
  return 0;
}

async function projectSet(ctx: Context): Promise<number> {
  const [name] = ctx.positionals as [string];
  if ((ctx.values.public === true) === (ctx.values.private === true))
    throw new UsageError("one of --public or --private");
  await ctx.api().send("PUT", `/projects/${enc(name)}`, { json: { public: ctx.values.public === true } });
  process.stdout.write(`project ${name} is ${ctx.values.public === true ? "public" : "private"}\n`);
  return 0;
}

async function projectMember(ctx: Context): Promise<number> {
  const [project, user, role] = ctx.positionals as [string, string, string];
  await ctx.api().send("PUT", `/projects/${enc(project)}/members/${enc(user)}`, {
    json: { role: role === "none" ? null : role },
  });
  process.stdout.write(
    role === "none" ? `${user} removed from ${project}\n` : `${user} is ${role} of ${project}\n`,
  );
  return 0;
}

/** "30d", "12h" or a number of days. */
function days(text: string): number {
  const m = /^(\d+(?:\.\d+)?)([dh]?)$/.exec(text);
  if (m === null) throw new UsageError(`--expires ${text}: a duration like 30d or 12h`);
  return m[2] === "h" ? Number(m[1]) / 24 : Number(m[1]);
}

export const IDENTITY_COMMANDS: Record<string, Command> = {
  whoami: { args: [], options: JSON_OPT, run: whoami },
  "user list": { args: [], options: JSON_OPT, run: userList },
  "user add": {
    args: ["NAME"],
    options: {
      ...JSON_OPT,
      admin: { type: "boolean", default: false },
      operator: { type: "boolean", default: false },
      "password-file": { type: "string" },
    },
    run: userAdd,
  },
  "user operator": { args: ["NAME", "on|off"], run: userOperator },
  "user delete": { args: ["NAME"], run: userDelete },
  "user revoke-tokens": {
    args: ["NAME"],
    options: JSON_OPT,
    run: (ctx) => {
      const [name] = ctx.positionals as [string];
      return revokeTokens(ctx, `/users/${enc(name)}/revoke-tokens`);
    },
  },
  "robot create": {
    args: ["NAME"],
    options: {
      ...JSON_OPT,
      project: { type: "string" },
      actions: { type: "string" },
      repos: { type: "string" },
      expires: { type: "string", default: "30d" },
      "secret-file": { type: "string" },
    },
    run: robotCreate,
  },
  "robot list": { args: [], options: JSON_OPT, run: robotList },
  "robot delete": { args: ["NAME"], run: robotDelete },
  "robot revoke-tokens": {
    args: ["NAME"],
    options: JSON_OPT,
    run: (ctx) => {
      const [name] = ctx.positionals as [string];
      const full = name.startsWith("robot$") ? name : `robot$${name}`;
      return revokeTokens(ctx, `/robots/${enc(full)}/revoke-tokens`);
    },
  },
  "project list": { args: [], options: JSON_OPT, run: projectList },
  "project set": {
    args: ["NAME"],
    options: { public: { type: "boolean", default: false }, private: { type: "boolean", default: false } },
    run: projectSet,
  },
  "project member": { args: ["PROJECT", "USER", "ROLE"], run: projectMember },
};

/** The name and password of a Basic authorization header (undefined for anything else). */
function basicCredentials(authorization: string | undefined): { name: string; password: string } | undefined {
  if (authorization === undefined || !authorization.startsWith("Basic ")) return undefined;
  const text = Buffer.from(authorization.slice(6), "base64").toString("utf8");
  const colon = text.indexOf(":");
  return colon <= 0 ? undefined : { name: text.slice(0, colon), password: text.slice(colon + 1) };
}
