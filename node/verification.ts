/**
 * The public keys this node verifies signatures with (setting
 * `verification.keys`: name → PEM file of an ECDSA P-256 public key, what
 * `cosign generate-key-pair` writes as cosign.pub). Read once at start;
 * `checkVerificationKeys` runs with the rest of the configuration's checks,
 * so a missing file or a key of the wrong kind is a configuration error
 * naming the key, not a verification that fails later.
 */
import { existsSync, readFileSync } from "node:fs";
import { Setting } from "../protocol/config-schema.js";
import { parseCosignKey } from "../protocol/cosign.js";

/** The node's `verification` settings (node/config.ts NODE_SETTINGS). */
export function verificationSettings() {
  return Setting.section({
    keys: Setting.table({
      env: "MERIDIAN_VERIFICATION_KEYS",
      default: {},
      doc: "name → PEM file of an ECDSA P-256 (cosign) public key, for GET /admin/v1/verify/…",
    }),
  });
}

/** Every problem with the configured keys, each naming its key and file. */
export function checkVerificationKeys({ keys }: { keys: Readonly<Record<string, string>> }): string[] {
  const problems: string[] = [];
  for (const [name, file] of Object.entries(keys)) {
    const where = `verification.keys.${name} ${file}`;
    if (!existsSync(file)) {
      problems.push(`${where}: does not exist`);
      continue;
    }
    const parsed = parseCosignKey(readFileSync(file, "utf8"));
    if ("reason" in parsed) problems.push(`${where}: ${parsed.reason}`);
  }
  return problems;
}

/** The keys' PEM text by name (after `checkVerificationKeys` found no problem). */
export function readVerificationKeys(keys: Readonly<Record<string, string>>): ReadonlyMap<string, string> {
  return new Map(Object.entries(keys).map(([name, file]) => [name, readFileSync(file, "utf8")]));
}
