/**
 * The OIDC commands (issue 18): users signed in through the identity
 * provider and their CLI secrets, through a region's admin API
 * (node/http/admin/oidc.ts). Dispatched by cli/admin.ts.
 *
 * The CLI cannot follow a browser sign-in: the first CLI secret comes from a
 * browser session (README "OIDC"); from then on the user runs these with
 * MERIDIAN_USER=<name> and MERIDIAN_PASSWORD_FILE=<file holding the secret>.
 * `oidc secret rotate` prints the new secret once; the old one stops working
 * at once.
 */
import { type Command, type Context, JSON_OPT, printJson, UsageError } from "./admin-client.js";
import { table } from "./table.js";

export const OIDC_USAGE = `  oidc users                      users signed in through the identity provider: groups, roles, CLI secret
  oidc secret rotate              a new CLI secret for yourself (printed once; the old one stops working);
                                  sign in with your current one (MERIDIAN_USER, MERIDIAN_PASSWORD_FILE)
  oidc secret revoke [USER]       revoke your CLI secret (or USER's: system admins)
`;

export const OIDC_COMMANDS: Record<string, Command> = {
  "oidc users": { args: [], options: JSON_OPT, run: oidcUsers },
  "oidc secret": { args: ["ACTION", "[USER]"], options: JSON_OPT, run: secret },
};

interface OidcUserRow {
  name: string;
  groups: string[];
  systemAdmin: boolean;
  operator: boolean;
  roles: Record<string, string>;
  signedIn: boolean;
  lastSignIn: string;
  cliSecret: boolean;
}

async function oidcUsers(ctx: Context): Promise<number> {
  const reply = await ctx.api().get<{ users: OidcUserRow[] }>("/oidc/users");
  if (ctx.json) return printJson(reply);
  const lines = [["user", "groups", "system admin", "roles", "signed in", "last sign-in", "CLI secret"]];
  for (const u of reply.users)
    lines.push([
      u.name,
      u.groups.join(",") || "-",
      u.systemAdmin ? "yes" : u.operator ? "operator" : "no",
      Object.entries(u.roles)
        .map(([p, r]) => `${p}:${r}`)
        .join(",") || "-",
      u.signedIn ? "yes" : "no",
      u.lastSignIn,
      u.cliSecret ? "yes" : "no",
    ]);
  process.stdout.write(table(lines));
  return 0;
}

async function me(ctx: Context): Promise<string> {
  return (await ctx.api().get<{ name: string }>("/whoami")).name;
}

/** `oidc secret rotate` (yourself) or `oidc secret revoke [USER]`. */
async function secret(ctx: Context): Promise<number> {
  const [action, user] = ctx.positionals;
  if (action === "rotate" && user === undefined) return secretRotate(ctx);
  if (action === "revoke") return secretRevoke(ctx, user);
  throw new UsageError("oidc secret: want `rotate` (yourself) or `revoke [USER]`");
}

async function secretRotate(ctx: Context): Promise<number> {
  const name = await me(ctx);
  const reply = await ctx
    .api()
    .send<{ name: string; secret: string; setAt: string }>(
      "POST",
      `/oidc/users/${encodeURIComponent(name)}/secret`,
      { json: {} },
    );
  if (ctx.json) return printJson(reply);
  process.stdout.write(
    `new CLI secret of ${name} (shown once; the old one no longer works):\n${reply.secret}\n`,
  );
  return 0;
}

async function secretRevoke(ctx: Context, user: string | undefined): Promise<number> {
  const name = user ?? (await me(ctx));
  const reply = await ctx
    .api()
    .send<{ name: string; seq: number }>("DELETE", `/oidc/users/${encodeURIComponent(name)}/secret`);
  if (ctx.json) return printJson(reply);
  process.stdout.write(`CLI secret of ${name} revoked\n`);
  return 0;
}
