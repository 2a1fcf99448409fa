/**
 * The runtime shim on Deno: `Deno.Command`.
 *
 * @example
 * ```ts
 * import { denoRuntime } from "./deno.ts";
 * const c = await denoRuntime.spawn("true", []);
 * await c.status; // { code: 0, signal: null }
 * ```
 * @module
 */
import { NotFoundError } from "../errors.ts";
import { type ChildProcess, exitStatus, permissionRefusal, type Runtime, type SpawnOptions } from "./types.ts";

/** The Deno implementation of {@linkcode Runtime}. @example `await denoRuntime.spawn("true", [])` */
export const denoRuntime: Runtime = {
  name: "deno",
  spawn(cmd: string, args: readonly string[], o: SpawnOptions = {}): Promise<ChildProcess> {
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
    if (o.signal) {
      if (o.signal.aborted) kill("SIGKILL");
      else o.signal.addEventListener("abort", () => kill("SIGKILL"), { once: true });
    }
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
};

function mapSpawnError(cmd: string, e: unknown): Error {
  if (e instanceof Deno.errors.NotFound) {
    return new NotFoundError(`binary not found: ${cmd} (install it or put it on PATH)`, { cause: e, details: { binary: cmd } });
  }
  const refused = permissionRefusal(e, "--allow-run", `running ${cmd} (the SDK needs --allow-run --allow-read --allow-write --allow-env)`);
  if (refused) return refused;
  return e instanceof Error ? e : new Error(String(e));
}
