/**
 * The runtime shim on Bun: `Bun.spawn`. A piped stdin is a stream Bun reads
 * (a `TransformStream`'s readable side; the caller writes its writable side),
 * so backpressure holds and a child that went away fails the next write.
 *
 * @example Spawning directly on Bun (the SDK goes through `runtime()`)
 * ```ts
 * import assert from "node:assert/strict";
 * import { bunRuntime } from "./bun.ts";
 * const c = await bunRuntime.spawn("true", []);
 * assert.deepEqual(await c.status, { code: 0, signal: null });
 * ```
 * @module
 */
import { closeSync, openSync, write } from "node:fs";
import process from "node:process";
import { nodeTerminal } from "./node.ts";
import { binaryNotFound, closingStream, defineRuntime, exitStatus, fdWritable, nodeStdio as mapStdio } from "./spawn.ts";
import type { ChildProcess, Runtime, SpawnOptions } from "./types.ts";

interface BunSubprocess {
  pid: number;
  stdout: ReadableStream<Uint8Array> | null;
  stderr: ReadableStream<Uint8Array> | null;
  exited: Promise<number>;
  exitCode: number | null;
  signalCode: string | null;
  kill(signal?: string | number): void;
  unref(): void;
  ref(): void;
}
interface BunGlobal {
  spawn(cmd: string[], opts: Record<string, unknown>): BunSubprocess;
  file(fd: number): { stream(): ReadableStream<Uint8Array> };
  which(cmd: string, opts?: { PATH?: string }): string | null;
}

/** The Bun implementation of {@linkcode Runtime}. @example `await bunRuntime.spawn("true", [])` */
export const bunRuntime: Runtime = defineRuntime("bun", (cmd: string, args: readonly string[], o: SpawnOptions): Promise<ChildProcess> => {
  const Bun = (globalThis as unknown as { Bun: BunGlobal }).Bun;
  const env: Record<string, string> = o.clearEnv ? { ...o.env } : { ...process.env as Record<string, string>, ...o.env };
  let p: BunSubprocess;
  // a piped stdin is a stream Bun reads from, not its FileSink: a FileSink written after the child exited
  // throws EPIPE as an uncaught error (a test fails, a script may die) or takes every chunk without a word
  // (an endless source then spins forever); from a stream, Bun cancels it when the child is gone, and the
  // writer's next write fails
  const pipe = o.stdin === "piped" ? new TransformStream<Uint8Array, Uint8Array>() : null;
  try {
    p = Bun.spawn([cmd, ...args], {
      cwd: o.cwd,
      env,
      stdin: pipe ? pipe.readable : mapStdio(o.stdin, "null"),
      stdout: mapStdio(o.stdout, "piped"),
      stderr: mapStdio(o.stderr, "piped"),
    });
  } catch (e) {
    const msg = String((e as Error)?.message ?? e);
    if (/ENOENT|not found/i.test(msg)) {
      return Promise.reject(binaryNotFound(cmd, e));
    }
    return Promise.reject(e);
  }
  const kill = (signal = "SIGTERM") => {
    try {
      if (p.exitCode === null && p.signalCode === null) p.kill(signal);
    } catch { /* already exited */ }
  };
  const stdin = pipe ? pipeWriter(pipe.writable) : null;
  const status = p.exited.then(() => exitStatus(p.exitCode, p.signalCode));
  // Bun makes an output stream when its property is first read, and an unread one keeps this
  // process alive even after unref(): so they are handed out only when someone asks
  return Promise.resolve({
    pid: p.pid,
    stdin,
    get stdout() {
      return p.stdout ?? null;
    },
    get stderr() {
      return p.stderr ?? null;
    },
    status,
    kill,
    unref: () => p.unref(),
    ref: () => p.ref(),
  });
}, (path, end) => {
  const Bun = (globalThis as unknown as { Bun: BunGlobal }).Bun;
  // Bun's streams over a descriptor it did not open leave it open: closed here, once
  // opened both ways first, so the open of the wanted end cannot block this whole thread when the other
  // side is gone (openSync is a blocking open(2)): a reader then sees end-of-file and a writer a broken pipe
  const hold = openSync(path, "r+");
  let fd: number;
  try {
    fd = openSync(path, end === "read" ? "r" : "w");
  } finally {
    closeSync(hold);
  }
  let closed = false;
  const close = () => {
    if (!closed) closeSync(fd);
    closed = true;
  };
  if (end === "read") return closingStream(Bun.file(fd).stream(), close);
  // node:fs write, not a FileSink: a FileSink over a fifo whose reader went away reports EPIPE only as an
  // uncaught error and goes on taking chunks (an endless source then fills memory and never ends), and it
  // writes on this thread; write(2) through node:fs runs off it and rejects with EPIPE
  return fdWritable((b) => new Promise((res, rej) => write(fd, b, 0, b.length, null, (e, n) => e ? rej(e) : res(n))), close);
});

/**
 * The writable end handed out for a piped stdin: writes go on to the stream Bun reads (and fail once the
 * child is gone); closing or aborting it never fails, as closing a pipe's end does not elsewhere.
 */
function pipeWriter(to: WritableStream<Uint8Array>): WritableStream<Uint8Array> {
  const w = to.getWriter();
  return new WritableStream<Uint8Array>({
    async write(chunk) {
      await w.write(chunk);
    },
    close: () => w.close().catch(() => {}),
    abort: (reason) => w.abort(reason).catch(() => {}),
  });
}

let libcFlock: ((fd: number, op: number) => number) | undefined;

/** `flock` on Bun: libc's, through `bun:ffi` (Bun has no file-lock API; libc is opened once); none when libc cannot be opened. */
function bunLockFile(path: string) {
  type Ffi = {
    dlopen(lib: string, syms: Record<string, { args: string[]; returns: string }>): { symbols: { flock(fd: number, op: number): number } };
  };
  if (!libcFlock) {
    const req = (import.meta as unknown as { require(m: string): unknown }).require;
    const { dlopen } = req("bun:ffi") as Ffi;
    libcFlock = dlopen("libc.so.6", { flock: { args: ["i32", "i32"], returns: "i32" } }).symbols.flock;
  }
  const flock = libcFlock;
  const fd = openSync(path, "a+", 0o600);
  return {
    lock: () => {
      // LOCK_EX; EINTR is retried
      for (let i = 0; flock(fd, 2) !== 0; i++) if (i > 100) throw new Error(`flock(${path}) failed`);
    },
    unlock: () => void flock(fd, 8),
    close: () => closeSync(fd),
  };
}
bunRuntime.lockFile = bunLockFile;
// Bun's node:process and node:tty behave as Node's for raw mode, window size and SIGWINCH
bunRuntime.terminal = nodeTerminal;
