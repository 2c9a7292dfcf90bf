#!/usr/bin/env node
// Rewrites the configuration reference in README.md (between the BEGIN/END
// markers) from the settings schemas, through the built CLI
// (`meridian config reference`). Run after `npm run build`;
// cli/test/config-cli.test.ts fails when the README's copy is stale.
//
//   node scripts/gen-config-docs.mjs
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { configReferenceMarkdown, REFERENCE_BEGIN, REFERENCE_END } = await import(
  join(root, "dist", "cli", "config.js")
);
const file = join(root, "README.md");
const text = readFileSync(file, "utf8");
const begin = text.indexOf(REFERENCE_BEGIN);
const end = text.indexOf(REFERENCE_END);
if (begin < 0 || end < begin) throw new Error("README.md: the configuration reference markers are missing");
writeFileSync(
  file,
  `${text.slice(0, begin + REFERENCE_BEGIN.length)}\n\n${configReferenceMarkdown()}\n${text.slice(end)}`,
);
console.log("README.md: configuration reference regenerated");
