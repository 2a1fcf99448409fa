/**
 * The runtime shim on Node.js: `node:child_process` with streams converted to
 * Web Streams.
 *
 * @example
 * ```ts
 * import { nodeRuntime } from "./node.ts";
 * const c = await nodeRuntime.spawn("true", []);
 * await c.status; // { code: 0, signal: null }
 * ```
 * @module
 */
import { spawn } from "node:child_process";
import process from "node:process";
import { Readable, Writable } from "node:stream";
import { NotFoundError } from "../errors.ts";
import { type ChildProcess, exitStatus, nodeStdio as mapStdio, type Runtime, type SpawnOptions } from "./types.ts";

/** The Node implementation of {@linkcode Runtime}. @example `await nodeRuntime.spawn("true", [])` */
export const nodeRuntime: Runtime = {
  name: "node",
  spawn(cmd: string, args: readonly string[], o: SpawnOptions = {}): Promise<ChildProcess> {
    const env = o.clearEnv ? { ...o.env } : { ...process.env, ...o.env };
    const c = spawn(cmd, [...args], {
      cwd: o.cwd,
      env,
      stdio: [mapStdio(o.stdin, "null"), mapStdio(o.stdout, "piped"), mapStdio(o.stderr, "piped")],
    });
    const kill = (signal = "SIGTERM") => {
      if (c.exitCode === null && c.signalCode === null) c.kill(signal as NodeJS.Signals);
    };
    if (o.signal) {
      if (o.signal.aborted) kill("SIGKILL");
      else o.signal.addEventListener("abort", () => kill("SIGKILL"), { once: true });
    }
    return new Promise((resolve, reject) => {
      c.once("error", (e: NodeJS.ErrnoException) => {
        if (e.code === "ENOENT") {
          reject(new NotFoundError(`binary not found: ${cmd} (install it or put it on PATH)`, { cause: e, details: { binary: cmd } }));
        } else reject(e);
      });
      c.once("spawn", () => {
        const status = new Promise<ReturnType<typeof exitStatus>>((res) => c.once("close", (code, sig) => res(exitStatus(code, sig))));
        resolve({
          pid: c.pid!,
          stdin: c.stdin ? Writable.toWeb(c.stdin) as WritableStream<Uint8Array> : null,
          stdout: c.stdout ? Readable.toWeb(c.stdout) as unknown as ReadableStream<Uint8Array> : null,
          stderr: c.stderr ? Readable.toWeb(c.stderr) as unknown as ReadableStream<Uint8Array> : null,
          status,
          kill,
          unref: () => c.unref(),
          ref: () => c.ref(),
        });
      });
    });
  },
};
