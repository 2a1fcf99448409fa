/**
 * The runtime shim on Node.js: `node:child_process` with streams converted to
 * Web Streams.
 *
 * @example Spawning directly on Node (the SDK goes through `runtime()`)
 * ```ts
 * import assert from "node:assert/strict";
 * import { nodeRuntime } from "./node.ts";
 * const c = await nodeRuntime.spawn("true", []);
 * assert.deepEqual(await c.status, { code: 0, signal: null });
 * ```
 * @module
 */
import { spawn } from "node:child_process";
import { constants, openSync } from "node:fs";
import { Socket } from "node:net";
import process from "node:process";
import { Readable, Writable } from "node:stream";
import { binaryNotFound, defineRuntime, exitStatus, nodeStdio as mapStdio } from "./spawn.ts";
import type { ChildProcess, HostTerminal, Runtime, SpawnOptions } from "./types.ts";

/** The Node implementation of {@linkcode Runtime}. @example `await nodeRuntime.spawn("true", [])` */
export const nodeRuntime: Runtime = defineRuntime(
  "node",
  (cmd: string, args: readonly string[], o: SpawnOptions): Promise<ChildProcess> => {
    const env = o.clearEnv ? { ...o.env } : { ...process.env, ...o.env };
    const c = spawn(cmd, [...args], {
      cwd: o.cwd,
      env,
      stdio: [mapStdio(o.stdin, "null"), mapStdio(o.stdout, "piped"), mapStdio(o.stderr, "piped")],
    });
    const kill = (signal = "SIGTERM") => {
      if (c.exitCode === null && c.signalCode === null) c.kill(signal as NodeJS.Signals);
    };
    return new Promise((resolve, reject) => {
      c.once("error", (e: NodeJS.ErrnoException) => {
        if (e.code === "ENOENT") {
          reject(binaryNotFound(cmd, e));
        } else reject(e);
      });
      c.once("spawn", () => {
        // "exit", not "close": "close" waits for every stdio stream to end, so an unread stream would hold
        // up status; Deno's and Bun's statuses resolve when the process exits, and so does this one
        const status = new Promise<ReturnType<typeof exitStatus>>((res) => c.once("exit", (code, sig) => res(exitStatus(code, sig))));
        resolve({
          pid: c.pid!,
          stdin: c.stdin ? Writable.toWeb(c.stdin) as WritableStream<Uint8Array> : null,
          stdout: c.stdout ? Readable.toWeb(c.stdout) as unknown as ReadableStream<Uint8Array> : null,
          stderr: c.stderr ? Readable.toWeb(c.stderr) as unknown as ReadableStream<Uint8Array> : null,
          status,
          kill,
          // as on Deno and Bun, an unref'd child does not keep this process alive, its open pipes included
          unref: () => {
            c.unref();
            for (const s of [c.stdin, c.stdout, c.stderr]) (s as { unref?: () => void } | null)?.unref?.();
          },
          ref: () => {
            c.ref();
            for (const s of [c.stdin, c.stdout, c.stderr]) (s as { ref?: () => void } | null)?.ref?.();
          },
        });
      });
    });
  },
  (path, end) => {
    // a fifo's descriptor as a socket handle: libuv reads and writes it without blocking, as a child's pipe
    const fd = openSync(path, (end === "read" ? constants.O_RDONLY : constants.O_WRONLY) | constants.O_NONBLOCK);
    const s = new Socket({ fd, readable: end === "read", writable: end === "write" });
    // a one-way socket is not destroyed at its end by itself, and its handle would keep this process alive:
    // the read side goes at end-of-file, the write side once its last byte is out (or on an error)
    s.once(end === "read" ? "end" : "finish", () => s.destroy());
    return end === "read" ? Readable.toWeb(s) as unknown as ReadableStream<Uint8Array> : Writable.toWeb(s) as WritableStream<Uint8Array>;
  },
);

/**
 * This process's terminal through `node:process` (Node, and Bun, which implements `node:tty` the same way):
 * `stdin.setRawMode`, `stdout.getWindowSize()`, a SIGWINCH listener.
 *
 * @example `nodeTerminal.interactive() // false when stdin is a pipe`
 */
export const nodeTerminal: HostTerminal = {
  interactive: () => process.stdin.isTTY === true && process.stdout.isTTY === true,
  setRaw: (on) => void (process.stdin as { setRawMode?: (on: boolean) => void }).setRawMode?.(on),
  size: () => {
    const ws = (process.stdout as { getWindowSize?: () => [number, number] }).getWindowSize?.();
    return ws && ws[0] > 0 && ws[1] > 0 ? { cols: ws[0], rows: ws[1] } : null;
  },
  onResize: (fn) => {
    process.on("SIGWINCH", fn);
    return () => void process.off("SIGWINCH", fn);
  },
};
nodeRuntime.terminal = nodeTerminal;
