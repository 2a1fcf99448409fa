// The SDK type-checks in a consumer's project under the strictest settings users turn on (`strict`,
// `noUncheckedIndexedAccess`, `exactOptionalPropertyTypes`), with the DOM library and without it (a Node
// project that has only @types/node). Runs `tsc` from the devDependency `typescript`; no sandbox, no root.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dirname ?? ".", "..");

function typeCheck(lib: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), "mvm-consumer-"));
  try {
    const config = {
      compilerOptions: {
        target: "ES2022",
        module: "NodeNext",
        moduleResolution: "NodeNext",
        lib,
        types: ["node"],
        typeRoots: [join(ROOT, "node_modules/@types")],
        strict: true,
        noUncheckedIndexedAccess: true,
        exactOptionalPropertyTypes: true,
        noImplicitOverride: true,
        allowImportingTsExtensions: true,
        noEmit: true,
        skipLibCheck: false,
      },
      files: [join(ROOT, "mod.ts"), join(ROOT, "tests/fixtures/consumer/app.ts")],
    };
    writeFileSync(join(dir, "tsconfig.json"), JSON.stringify(config));
    try {
      execFileSync(join(ROOT, "node_modules/.bin/tsc"), ["-p", join(dir, "tsconfig.json")], { encoding: "utf8", stdio: "pipe" });
      return "";
    } catch (e) {
      const err = e as { stdout?: string; stderr?: string; message: string };
      return `${err.stdout ?? ""}${err.stderr ?? ""}` || err.message;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("a strict consumer with the DOM library type-checks the SDK without errors", () => {
  assert.equal(typeCheck(["ES2023", "ESNext.Disposable", "DOM"]), "");
});

test("a strict Node consumer (only @types/node, no DOM) type-checks the SDK without errors", () => {
  assert.equal(typeCheck(["ES2023", "ESNext.Disposable"]), "");
});
