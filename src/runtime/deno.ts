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
import { binaryNotFound, defineRuntime, exitStatus, fdWritable } from "./spawn.ts";
import type { ChildProcess, HostTerminal, Runtime, SpawnOptions } from "./types.ts";

// The slice of Deno's API this file uses, typed here: a consumer type-checking the SDK on Node or Bun has no Deno types.
interface DenoChild {
  readonly pid: number;
  readonly stdin: WritableStream<Uint8Array>;
  readonly stdout: ReadableStream<Uint8Array>;
  readonly stderr: ReadableStream<Uint8Array>;
  readonly status: Promise<{ code: number; signal: string | null }>;
  kill(signal?: string): void;
  unref(): void;
  ref(): void;
}
interface DenoCommandOptions {
  args: string[];
  cwd: string | undefined;
  env: Record<string, string> | undefined;
  clearEnv: boolean;
  stdin: string;
  stdout: string;
  stderr: string;
}
interface DenoNamespace {
  Command: new (cmd: string, options: DenoCommandOptions) => { spawn(): DenoChild };
  errors: { NotFound: new () => Error };
  stdin: { isTerminal(): boolean; setRaw(on: boolean): void };
  stdout: { isTerminal(): boolean };
  consoleSize(): { columns: number; rows: number };
  addSignalListener(signal: "SIGWINCH", fn: () => void): void;
  removeSignalListener(signal: "SIGWINCH", fn: () => void): void;
  openSync(path: string, o: { read?: boolean; write?: boolean }): {
    readable: ReadableStream<Uint8Array>;
    write(p: Uint8Array): Promise<number>;
    close(): void;
  };
}
const deno = (): DenoNamespace => (globalThis as unknown as { Deno: DenoNamespace }).Deno;

/** The Deno implementation of {@linkcode Runtime}. @example `await denoRuntime.spawn("true", [])` */
export const denoRuntime: Runtime = defineRuntime(
  "deno",
  (cmd: string, args: readonly string[], o: SpawnOptions): Promise<ChildProcess> => {
    let child: DenoChild;
    try {
      child = new (deno().Command)(cmd, {
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
        child.kill(signal);
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
  // a file of Deno's own: a chunk is one write(2) (a child's stdin pipe goes through more steps); its
  // `writable` is not used, as it holds small writes back from a fifo's reader
  (path, end) => {
    // a fifo is first opened both ways, so the open of the wanted end cannot block this whole thread when
    // the other side is gone (Deno's openSync is a blocking open(2)): a reader then sees end-of-file and a
    // writer a broken pipe, as they should, instead of a hang no timer can end
    const hold = deno().openSync(path, { read: true, write: true });
    let file;
    try {
      file = deno().openSync(path, end === "read" ? { read: true } : { write: true });
    } finally {
      hold.close();
    }
    if (end === "read") return file.readable;
    const f = file;
    return fdWritable((b) => f.write(b), () => f.close());
  },
);

function mapSpawnError(cmd: string, e: unknown): Error {
  if (e instanceof deno().errors.NotFound) return binaryNotFound(cmd, e);
  const refused = permissionRefusal(
    e,
    `--allow-run=${cmd}`,
    `running ${cmd} (the SDK needs ${DENO_FLAGS}, or the scoped set in the README)`,
  );
  if (refused) return refused;
  return e instanceof Error ? e : new Error(String(e));
}

interface DenoFsFile {
  lockSync(exclusive?: boolean): void;
  unlockSync(): void;
  close(): void;
}
/** `flock` on Deno: `Deno.FsFile.lockSync` (needs only --allow-read and --allow-write). */
denoRuntime.lockFile = (path: string) => {
  const Deno = (globalThis as unknown as { Deno: { openSync(p: string, o: Record<string, unknown>): DenoFsFile } }).Deno;
  const f = Deno.openSync(path, { read: true, write: true, create: true, mode: 0o600 });
  return { lock: () => f.lockSync(true), unlock: () => f.unlockSync(), close: () => f.close() };
};

/** This process's terminal on Deno: `Deno.stdin.setRaw`, `Deno.consoleSize`, a SIGWINCH listener. */
const denoTerminal: HostTerminal = {
  interactive: () => deno().stdin.isTerminal() && deno().stdout.isTerminal(),
  setRaw: (on) => deno().stdin.setRaw(on),
  size: () => {
    try {
      const { columns, rows } = deno().consoleSize();
      return { cols: columns, rows };
    } catch {
      return null;
    }
  },
  onResize: (fn) => {
    deno().addSignalListener("SIGWINCH", fn);
    return () => deno().removeSignalListener("SIGWINCH", fn);
  },
};
denoRuntime.terminal = denoTerminal;
