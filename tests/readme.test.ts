/**
 * The README's API table matches the code: every name mod.ts exports appears in the table (inside code
 * spans), and every error class the table names is exported. No sandbox, no root.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as sdk from "../mod.ts";

const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
const start = readme.indexOf("## The API");
const table = readme.slice(start, readme.indexOf("\n#", start + 1)).split("\n").filter((l) => l.startsWith("|")).join("\n");
const spans = [...table.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
const named = (name: string) => spans.some((s) => new RegExp(`(^|[^A-Za-z0-9_])${name}([^A-Za-z0-9_]|$)`).test(s));

test("readme: every export of mod.ts is in the README's API table", () => {
  assert.ok(table.length > 0, "no API table under '## The API'");
  assert.deepEqual(Object.keys(sdk).filter((k) => !named(k)), []);
});

test("readme: every error class the API table names is exported by mod.ts", () => {
  const classes = [...new Set(spans.flatMap((s) => s.match(/\b[A-Z][A-Za-z]*Error\b/g) ?? []))];
  assert.ok(classes.length > 10);
  assert.deepEqual(classes.filter((c) => !(c in sdk)), []);
});
