/**
 * The few facts and hooks of the host process the engines need: environment
 * variables, this process's uid and pid, the platform, whether a pid exists,
 * and hooks run at exit. Each works the same on Deno, Bun and Node
 * (`node:process`); under Deno a missing permission is a typed error.
 *
 * @example Facts of this process
 * ```ts
 * import assert from "node:assert/strict";
 * import { hostPid, pidExists } from "./host.ts";
 * assert.equal(pidExists(hostPid()), true);
 * ```
 * @module
 */
import { statSync } from "node:fs";
import process from "node:process";
import { runtime } from "./detect.ts";
import { isRefusal, permissionRefusal, SDK_ENV } from "./permissions.ts";

/**
 * Reads an environment variable. Under Deno without `--allow-env` for it: a name of
 * `SDK_ENV.optional` counts as unset; any other is a `PermissionDeniedError` naming
 * `--allow-env=<name>` and every name the SDK reads, so one run tells the whole list.
 *
 * @example `getEnv("HOME")`
 */
export function getEnv(name: string): string | undefined {
  try {
    return process.env[name];
  } catch (e) {
    if (isRefusal(e) && SDK_ENV.optional.includes(name)) return undefined;
    const all = [...SDK_ENV.required, ...SDK_ENV.optional].join(",");
    throw permissionRefusal(e, `--allow-env=${name}`, `reading the environment variable ${name} (the SDK reads --allow-env=${all})`) ?? e;
  }
}

/**
 * Whether a host path exists (following symlinks). Under Deno without read access to it, a
 * `PermissionDeniedError` naming `--allow-read=<path>`, never a silent false.
 *
 * @example `hostFileExists("/usr/bin/bwrap")`
 */
export function hostFileExists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch (e) {
    const refused = permissionRefusal(e, `--allow-read=${path}`, `reading ${path}`);
    if (refused) throw refused;
    return false;
  }
}

let uidCache: Promise<number> | undefined;
/**
 * The effective uid of this process (0 when root). Under Deno without
 * `--allow-sys` it asks `id -u` instead (one spawn, cached).
 *
 * @example `await hostUid()`
 */
export function hostUid(): Promise<number> {
  return uidCache ??= (async () => {
    try {
      if (typeof process.getuid === "function") return process.getuid();
    } catch { /* Deno without --allow-sys */ }
    // through /bin/sh, the one program besides perl the SDK runs on the host (--allow-run stays exact)
    const c = await runtime().spawn("/bin/sh", ["-c", "exec id -u"], { clearEnv: true, env: { PATH: "/usr/bin:/bin" }, stderr: "null" });
    const text = await new Response(c.stdout).text();
    await c.status;
    return Number(text.trim());
  })();
}

/** Whether a process exists (signal 0; a zombie counts as alive, and so does one we may not signal). @example `pidExists(1234)` */
export function pidExists(pid: number): boolean {
  if (!(pid > 0)) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * The argv that runs a script file on the runtime this code runs on: `deno run` with `denoFlags`
 * (default the SDK's unscoped permissions, `--allow-run --allow-read --allow-write --allow-env`),
 * `bun FILE`, `node FILE`.
 *
 * @example `const [cmd, ...args] = scriptArgv("/path/keeper.ts", ["--allow-run=/usr/bin/perl,/bin/sh"])`
 */
export function scriptArgv(
  file: string,
  denoFlags: readonly string[] = ["--allow-run", "--allow-read", "--allow-write", "--allow-env"],
): string[] {
  switch (runtime().name) {
    case "deno":
      return [process.execPath, "run", ...denoFlags, "--no-prompt", file];
    default:
      return [process.execPath, file];
  }
}

/** The id of this process. @example `hostPid()` */
export function hostPid(): number {
  return process.pid;
}

/** The operating system: `"linux"`, `"darwin"`, … @example `hostPlatform()` */
export function hostPlatform(): string {
  return process.platform;
}

const exitHooks: Array<() => void> = [];
let exitInstalled = false;
/**
 * Runs `fn` synchronously when this process exits normally (not on SIGKILL).
 * Hooks run in the order they were added; one that throws is reported and the
 * rest still run.
 *
 * @example `onExit(() => writeFileSync(path, json))`
 */
export function onExit(fn: () => void): void {
  exitHooks.push(fn);
  if (exitInstalled) return;
  exitInstalled = true;
  process.on("exit", () => runHooks(exitHooks.splice(0)));
}

/**
 * Runs each hook in order; one that throws is passed to `report` (by default
 * printed) and the rest still run. What {@linkcode onExit} does at exit.
 *
 * @example `runHooks([flushRecording, closeLog])`
 */
export function runHooks(hooks: ReadonlyArray<() => void>, report: (e: unknown) => void = reportHookFailure): void {
  for (const h of hooks) {
    try {
      h();
    } catch (e) {
      report(e);
    }
  }
}

function reportHookFailure(e: unknown): void {
  console.error("mvm sdk: exit hook failed:", e);
}
