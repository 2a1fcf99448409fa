/**
 * Scoped Deno permissions: a real sandbox under exactly the flags the README documents (`denoFlags()`
 * of the local engine), and with one of them taken away a PERMISSION_DENIED that names the flag and its
 * value, never a TRANSPORT or a silent fallback. The child is always `deno run`, so this runs when the
 * suite runs on Deno (on Bun and Node it would repeat the same Deno children).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import process from "node:process";
import { denoFlags, HOST_READ, preflight } from "../src/engines/local/preflight.ts";
import { runtime } from "../src/runtime/mod.ts";
import { collectText } from "../src/streams.ts";
import { RUNTIME, STATE } from "./helpers.ts";

const SCRIPT = new URL("./fixtures/scripts/scoped.ts", import.meta.url).pathname;
const skip = RUNTIME !== "deno" && "the children are Deno processes whatever runs the suite: once, under Deno, is enough";

async function runScoped(flags: string[], ...args: string[]): Promise<Record<string, unknown>> {
  const c = await runtime().spawn(process.execPath, ["run", "--no-check", "--no-prompt", ...flags, SCRIPT, ...args], { stderr: "piped" });
  const [out, err] = await Promise.all([collectText(c.stdout!), collectText(c.stderr!)]);
  await c.status;
  const line = out.trim().split("\n").pop() ?? "";
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw new Error(`the scoped script printed no result: ${out} ${err}`);
  }
}

/** `flags` with the value `drop` taken out of the flag `name` (the flag goes when nothing is left). */
function without(flags: string[], name: string, drop: string): string[] {
  return flags.flatMap((f) => {
    if (!f.startsWith(`${name}=`)) return [f];
    const rest = f.slice(name.length + 1).split(",").filter((v) => v !== drop);
    return rest.length ? [`${name}=${rest.join(",")}`] : [];
  });
}

/** Processes whose command line names `needle` (a leaked sleep, keeper or runner names its sandbox). */
function processesNaming(needle: string): string[] {
  const out: string[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, "utf8").replaceAll("\0", " ");
      if (cmd.includes(needle)) out.push(`${d} ${cmd.slice(0, 200)}`);
    } catch { /* gone */ }
  }
  return out;
}

test(
  "permissions: the README's scoped flags run a real sandbox: create, a command, a detached command, a file, limits where cgroups are, destroy",
  {
    skip,
  },
  async () => {
    const t = await preflight();
    const flags = denoFlags(t);
    const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
    const documented = denoFlags({ perl: "/usr/bin/perl", root: "$STATE/sandboxes", bwrap: "/usr/bin/bwrap" }).join(" ");
    assert.ok(readme.includes(documented), `the README does not show the scoped flags: ${documented}`);
    const r = await runScoped(flags, ...(t.layout ? ["limits"] : []));
    assert.equal(r.error, undefined, JSON.stringify(r.error));
    assert.equal(r.run, "hi\n");
    assert.equal(r.read, "data");
    assert.deepEqual(r.detached, ["detached\n", 0]);
    assert.deepEqual(r.commands, [false]);
    if (t.layout) assert.equal(r.limits, 200);
    assert.equal(r.destroyed, true);
    const id = String(r.id);
    assert.equal(existsSync(`${STATE}/${id}`), false);
    assert.deepEqual(processesNaming(id), []);
  },
);

test("permissions: each scoped flag taken away is PERMISSION_DENIED naming the flag and its value", { skip }, async () => {
  const t = await preflight();
  const flags = denoFlags(t);
  const base = t.root.replace(/\/sandboxes$/, "");
  const cases: Array<[string[], string]> = [
    // without /bin/sh the cgroup helper cannot run: never a quiet "no cgroups" (limits refused as needing root)
    [without(flags, "--allow-run", "/bin/sh"), "--allow-run=/bin/sh"],
    [without(flags, "--allow-run", t.perl), `--allow-run=${t.perl}`],
    [without(flags, "--allow-read", base), `--allow-read=${base}`],
    [without(flags, "--allow-read", HOST_READ[0]!), `--allow-read=${HOST_READ[0]}`],
    [without(flags, "--allow-write", base), `--allow-write=${base}`],
    [without(flags, "--allow-env", "MVM_STATE_DIR"), "--allow-env=MVM_STATE_DIR"],
    [without(flags, "--allow-env", "MVM_SDK_MODE"), "--allow-env=MVM_SDK_MODE"],
  ];
  for (const [f, flag] of cases) {
    const r = await runScoped(f, ...(t.layout ? ["limits"] : []));
    const e = r.error as { code?: string; message?: string; details?: { flag?: string } } | undefined;
    assert.equal(e?.code, "PERMISSION_DENIED", `without ${flag}: ${JSON.stringify(r)}`);
    assert.equal(e?.details?.flag?.startsWith(flag), true, `without ${flag}: ${JSON.stringify(e)}`);
    assert.ok(e?.message?.includes(flag), `without ${flag}: ${e?.message}`);
  }
});
