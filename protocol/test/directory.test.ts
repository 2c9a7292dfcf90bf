/**
 * protocol/directory.ts: RFC 4515 escaping (injection attempts stay
 * literal), the group table's parsing (every problem listed) and the grant
 * a set of groups earns (DN and cn keys, the stronger role, the union).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  cnOf,
  escapeFilterValue,
  fillFilter,
  grantOf,
  normalizeDn,
  parseGrant,
  parseGroupRules,
} from "../directory.js";

describe("filters", () => {
  test("RFC 4515 §3: * ( ) \\ and NUL are escaped, everything else kept", () => {
    const cases: Array<[string, string]> = [
      ["alice", "alice"],
      ["*", "\\2a"],
      ["*)(uid=*", "\\2a\\29\\28uid=\\2a"],
      ["a\\b", "a\\5cb"],
      ["nul\0", "nul\\00"],
      ["émile", "émile"],
      ["alice)(|(uid=*", "alice\\29\\28|\\28uid=\\2a"],
    ];
    for (const [raw, escaped] of cases) assert.equal(escapeFilterValue(raw), escaped, raw);
  });

  test("fillFilter substitutes {username} and {dn} escaped, and nothing else", () => {
    const template = "(&(objectClass=inetOrgPerson)(uid={username}))";
    assert.equal(fillFilter(template, { username: "bob" }), "(&(objectClass=inetOrgPerson)(uid=bob))");
    // The attack: close the uid test and add one that matches every entry.
    assert.equal(
      fillFilter(template, { username: "alice)(uid=*" }),
      "(&(objectClass=inetOrgPerson)(uid=alice\\29\\28uid=\\2a))",
    );
    assert.equal(
      fillFilter("(member={dn})", { dn: "uid=a(1),ou=people" }),
      "(member=uid=a\\281\\29,ou=people)",
    );
    assert.equal(fillFilter("(x={other})", { username: "u" }), "(x={other})");
    assert.equal(fillFilter("(m={dn})", { username: "u" }), "(m={dn})");
  });
});

describe("groups to roles", () => {
  test("DNs compare without case or spaces; cn is the first RDN's value", () => {
    assert.equal(normalizeDn(" CN=Devs , OU=Groups,dc=Example "), "cn=devs,ou=groups,dc=example");
    assert.equal(cnOf("CN=Devs,ou=groups,dc=example"), "devs");
    assert.equal(cnOf("uid=devs,ou=groups"), undefined);
  });

  test("every problem of the table is listed, naming its group", () => {
    const { problems } = parseGroupRules({
      admins: "admin",
      "": "admin",
      empty: " , ",
      bad: "team:owner, Team:guest, nonsense",
    });
    assert.deepEqual(problems, [
      'ldap.groups "": a group DN or cn is required',
      'ldap.groups "empty": grants nothing (admin, operator or PROJECT:ROLE)',
      'ldap.groups "bad": "owner" is not a role (projectAdmin, maintainer, developer, guest, limitedGuest)',
      'ldap.groups "bad": "Team:guest" is not admin, operator or PROJECT:ROLE',
      'ldap.groups "bad": "nonsense" is not admin, operator or PROJECT:ROLE',
    ]);
  });

  test("membership earns the union of its groups' grants, the stronger role per project", () => {
    const { rules, problems } = parseGroupRules({
      "cn=admins,ou=groups,dc=example,dc=org": "admin",
      devs: "team:developer, tools:guest",
      leads: "team:maintainer",
      ops: "operator, team:guest",
    });
    assert.deepEqual(problems, []);
    const g = (...dns: string[]) => grantOf(dns, rules);
    assert.deepEqual(g(), { systemAdmin: false, operator: false, roles: {} });
    assert.deepEqual(g("CN=Admins, OU=groups, dc=example, dc=org"), {
      systemAdmin: true,
      operator: false,
      roles: {},
    });
    // cn keys match any DN whose first RDN is that cn.
    assert.deepEqual(g("cn=devs,ou=teams,dc=example,dc=org"), {
      systemAdmin: false,
      operator: false,
      roles: { team: "developer", tools: "guest" },
    });
    assert.deepEqual(g("cn=devs,ou=x", "cn=leads,ou=x", "cn=ops,ou=x"), {
      systemAdmin: false,
      operator: true,
      roles: { team: "maintainer", tools: "guest" },
    });
    // A DN key does not match another DN with the same cn.
    assert.equal(g("cn=admins,ou=elsewhere,dc=example,dc=org").systemAdmin, false);
    assert.deepEqual(g("uid=devs,ou=people"), { systemAdmin: false, operator: false, roles: {} });
  });

  test("a grant read back from a token is checked", () => {
    const good = { systemAdmin: false, operator: true, roles: { team: "developer" } };
    assert.deepEqual(parseGrant(good), good);
    for (const bad of [
      null,
      "admin",
      { systemAdmin: "yes", operator: false, roles: {} },
      { systemAdmin: false, operator: false, roles: { team: "owner" } },
      { systemAdmin: false, operator: false, roles: { "Bad Project": "guest" } },
      { systemAdmin: false, operator: false, roles: [] },
    ])
      assert.equal(parseGrant(bad), undefined, JSON.stringify(bad));
  });
});
