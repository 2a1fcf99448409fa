// The npm package as a user gets it: `npm pack` (which builds dist/ with scripts/build-npm.sh), installed from the
// tarball into a scratch project under /tmp, then a real sandbox run from it on Node (>= 20), Bun and Deno (a bare
// import through the project's node_modules, and an `npm:` specifier), and the package's .d.ts type-checked by a
// strict consumer. Runs real sandboxes: honours MVM_STATE_DIR.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import process from "node:process";
import { RUNTIME, STATE } from "./helpers.ts";

const ROOT = resolve(import.meta.dirname ?? ".", "..");
const BIN = join(ROOT, "node_modules/.bin");
const DENO_FLAGS = ["--allow-run", "--allow-read", "--allow-write", "--allow-env"];

function run(cmd: string, args: string[], cwd: string): string {
  try {
    return execFileSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 120_000 });
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(" ")} failed in ${cwd}: ${err.message}\n${err.stdout ?? ""}${err.stderr ?? ""}`);
  }
}

/** The major version of the `node` on PATH, or 0 when there is none. */
function nodeMajor(): number {
  try {
    return Number(/^v(\d+)/.exec(execFileSync("node", ["--version"], { encoding: "utf8" }))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** Runs the example in the scratch project and checks what it printed and that its sandbox is gone. */
function runExample(cmd: string, args: string[], cwd: string): void {
  const out = run(cmd, args, cwd).trim().split("\n").pop() ?? "";
  const r = JSON.parse(out) as { stdout: string; exitCode: number; id: string };
  assert.equal(r.stdout, "hello from mvm\n");
  assert.equal(r.exitCode, 0);
  assert.match(r.id, /^sbx-[a-z0-9]{12}$/);
  assert.equal(existsSync(join(STATE, r.id)), false, `${cmd}: the sandbox's folder is still there`);
}

test("the packed npm tarball installs in a scratch project and runs a sandbox on Node, Bun and Deno", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "mvm-npm-"));
  try {
    const packed = JSON.parse(run("npm", ["pack", "--json", "--pack-destination", dir], ROOT)) as {
      filename: string;
      files: { path: string }[];
    }[];
    const pkg = packed[0];
    assert.ok(pkg, "npm pack reported no package");
    const files = pkg.files.map((f) => f.path);
    for (const f of ["LICENSE", "CHANGELOG.md", "README.md", "package.json", "dist/mod.js", "dist/mod.d.ts"]) {
      assert.ok(files.includes(f), `${f} is missing from the tarball`);
    }
    assert.deepEqual(files.filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts")), [], "TypeScript sources in the tarball");
    assert.match(readFileSync(join(ROOT, "LICENSE"), "utf8"), /Apache License\s+Version 2\.0/);

    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "scratch", private: true, type: "module" }));
    run("npm", ["install", "--offline", "--no-audit", "--no-fund", `./${pkg.filename}`], dir);
    copyFileSync(join(ROOT, "examples/npm-hello.mjs"), join(dir, "app.mjs"));
    writeFileSync(join(dir, "app-npm.mjs"), readFileSync(join(dir, "app.mjs"), "utf8").replace('"@mvm/sdk"', '"npm:@mvm/sdk"'));

    await t.test("Node", (t) => {
      const major = nodeMajor();
      if (major < 20) return t.skip(major ? `node is v${major}, the package needs >= 20` : "no node on PATH");
      runExample("node", ["app.mjs"], dir);
    });
    await t.test("Bun", () => runExample(RUNTIME === "bun" ? process.execPath : join(BIN, "bun"), ["app.mjs"], dir));
    await t.test("Deno (node_modules)", () => runExample(join(BIN, "deno"), ["run", ...DENO_FLAGS, "app.mjs"], dir));
    await t.test("Deno (npm: specifier)", () => runExample(join(BIN, "deno"), ["run", ...DENO_FLAGS, "app-npm.mjs"], dir));
    await t.test("the .d.ts in a strict consumer", () => {
      const app = readFileSync(join(ROOT, "tests/fixtures/consumer/app.ts"), "utf8").replace('"../../../mod.ts"', '"@mvm/sdk"');
      writeFileSync(join(dir, "consumer.ts"), app);
      writeFileSync(
        join(dir, "tsconfig.json"),
        JSON.stringify({
          compilerOptions: {
            target: "ES2022",
            module: "NodeNext",
            moduleResolution: "NodeNext",
            lib: ["ES2023", "ESNext.Disposable"],
            types: ["node"],
            typeRoots: [join(ROOT, "node_modules/@types")],
            strict: true,
            noUncheckedIndexedAccess: true,
            exactOptionalPropertyTypes: true,
            noEmit: true,
            skipLibCheck: false,
          },
          files: ["consumer.ts"],
        }),
      );
      run(join(BIN, "tsc"), ["-p", "tsconfig.json"], dir);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
