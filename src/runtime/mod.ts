/**
 * Picks the runtime shim for the runtime this code runs on, plus the few
 * host helpers the engines need (env, pid, uid, exit hooks).
 *
 * @example
 * ```ts
 * import { runtime } from "./src/runtime/mod.ts";
 * const child = await runtime().spawn("uname", ["-s"]);
 * console.log(await new Response(child.stdout).text());
 * ```
 * @module
 */
import process from "node:process";
import { PermissionDeniedError } from "../errors.ts";
import { permissionRefusal, type Runtime } from "./types.ts";
import { denoRuntime } from "./deno.ts";
import { bunRuntime } from "./bun.ts";
import { nodeRuntime } from "./node.ts";

export type { ChildProcess, ExitStatus, Runtime, SpawnOptions, Stdio } from "./types.ts";

/** The shim of the runtime we are on. @example `runtime().name // "deno" | "bun" | "node"` */
export function runtime(): Runtime {
  const g = globalThis as Record<string, unknown>;
  if (g.Deno !== undefined && (g.Deno as { Command?: unknown }).Command) return denoRuntime;
  if (g.Bun !== undefined) return bunRuntime;
  return nodeRuntime;
}

/**
 * Runs `fn` and turns a Deno permission refusal anywhere inside it into a
 * {@linkcode PermissionDeniedError} that says which flags the SDK needs.
 *
 * @example `await withHostPermissions(() => engine.create(spec))`
 */
export async function withHostPermissions<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof PermissionDeniedError) throw e;
    const flag = /--allow-[a-z]+/.exec(String((e as Error)?.message))?.[0] ?? "--allow-run --allow-read --allow-write --allow-env";
    throw permissionRefusal(
      e,
      flag,
      `a host operation the sandbox needs (${(e as Error)?.message}); the SDK needs --allow-run --allow-read --allow-write --allow-env`,
    ) ?? e;
  }
}

/** Reads an environment variable; under Deno without --allow-env, says which flag is missing. @example `getEnv("HOME")` */
export function getEnv(name: string): string | undefined {
  try {
    return process.env[name];
  } catch (e) {
    throw permissionRefusal(e, `--allow-env=${name}`, `reading the environment variable ${name}`) ?? e;
  }
}

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
    const c = await runtime().spawn("id", ["-u"], { stderr: "null" });
    const text = await new Response(c.stdout).text();
    await c.status;
    return Number(text.trim());
  })();
}
let uidCache: Promise<number> | undefined;

/** Whether a process exists (signal 0; a zombie counts as alive). @example `pidExists(1234)` */
export function pidExists(pid: number): boolean {
  if (!(pid > 0)) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
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
 * @example `onExit(() => writeFileSync(path, json))`
 */
export function onExit(fn: () => void): void {
  exitHooks.push(fn);
  if (exitInstalled) return;
  exitInstalled = true;
  process.on("exit", () => {
    for (const h of exitHooks.splice(0)) {
      try {
        h();
      } catch (e) {
        console.error("mvm sdk: exit hook failed:", e);
      }
    }
  });
}
