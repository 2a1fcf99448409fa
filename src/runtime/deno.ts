/**
 * The runtime shim on Deno: `Deno.Command`.
 *
 * @example Spawning directly on Deno (the SDK goes through `runtime()`)
 * ```ts
 * import assert from "node:assert/strict";
 * import { denoRuntime } from "./deno.ts";
 * const c = await denoRuntime.spawn("true", []);
 * assert.deepEqual(await c.status, { code: 0, signal: null });
 * ```
 * @module
 */
import { DENO_FLAGS, permissionRefusal } from "./permissions.ts";
import { binaryNotFound, defineRuntime, exitStatus } from "./spawn.ts";
import type { ChildProcess, Runtime, SpawnOptions } from "./types.ts";

/** The Deno implementation of {@linkcode Runtime}. @example `await denoRuntime.spawn("true", [])` */
export const denoRuntime: Runtime = defineRuntime(
  "deno",
  (cmd: string, args: readonly string[], o: SpawnOptions): Promise<ChildProcess> => {
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(cmd, {
        args: [...args],
        cwd: o.cwd,
        env: o.env,
        clearEnv: o.clearEnv ?? false,
        stdin: o.stdin ?? "null",
        stdout: o.stdout ?? "piped",
        stderr: o.stderr ?? "piped",
      }).spawn();
    } catch (e) {
      return Promise.reject(mapSpawnError(cmd, e));
    }
    const kill = (signal = "SIGTERM") => {
      try {
        child.kill(signal as Deno.Signal);
      } catch { /* already exited */ }
    };
    const status = child.status.then((s) => exitStatus(s.signal ? null : s.code, s.signal));
    return Promise.resolve({
      pid: child.pid,
      stdin: o.stdin === "piped" ? child.stdin : null,
      stdout: (o.stdout ?? "piped") === "piped" ? child.stdout : null,
      stderr: (o.stderr ?? "piped") === "piped" ? child.stderr : null,
      status,
      kill,
      unref: () => child.unref(),
      ref: () => child.ref(),
    });
  },
);

function mapSpawnError(cmd: string, e: unknown): Error {
  if (e instanceof Deno.errors.NotFound) return binaryNotFound(cmd, e);
  const refused = permissionRefusal(e, "--allow-run", `running ${cmd} (the SDK needs ${DENO_FLAGS})`);
  if (refused) return refused;
  return e instanceof Error ? e : new Error(String(e));
}
