/**
 * What the three shims (`deno.ts`, `bun.ts`, `node.ts`) share: the one place
 * an `AbortSignal` is wired to a child, exit-status normalising, the stdio
 * spelling of `node:child_process` and Bun, and the missing-binary error.
 *
 * @example A shim is a spawn function wrapped once
 * ```ts
 * import assert from "node:assert/strict";
 * import { defineRuntime, exitStatus } from "./spawn.ts";
 * const fake = defineRuntime("node", () =>
 *   Promise.resolve({
 *     pid: 1, stdin: null, stdout: null, stderr: null,
 *     status: Promise.resolve(exitStatus(0, null)),
 *     kill() {}, unref() {}, ref() {},
 *   }), () => new ReadableStream());
 * assert.deepEqual(await (await fake.spawn("true", [])).status, { code: 0, signal: null });
 * ```
 * @module
 */
import { NotFoundError } from "../errors.ts";
import type { ChildProcess, ExitStatus, Runtime, RuntimeName, SpawnOptions, Stdio } from "./types.ts";

/** A runtime's own spawn: everything of {@linkcode SpawnOptions} but `signal`, which {@linkcode defineRuntime} wires. */
export type SpawnFn = (cmd: string, args: readonly string[], options: SpawnOptions) => Promise<ChildProcess>;

/** A runtime's way to open a fifo's end as a stream (see {@linkcode Runtime.openFifo}). */
export type FifoFn = (path: string, end: "read" | "write") => ReadableStream<Uint8Array> | WritableStream<Uint8Array>;

const noFifo: FifoFn = () => {
  throw new Error("this runtime shim opens no fifos");
};

/** `close`, run at most once, its throw (an already closed descriptor) swallowed. @example `const done = closeOnce(() => closeSync(fd))` */
function closeOnce(close: () => void): () => void {
  let closed = false;
  return () => {
    if (closed) return;
    closed = true;
    try {
      close();
    } catch { /* already closed */ }
  };
}

/**
 * A `WritableStream` over a descriptor's `write` (one that resolves to the bytes written): each chunk is
 * written whole before the next is taken, and the descriptor is closed once — at the end, on abort, or
 * when a write fails (a fifo whose reader went away rejects with EPIPE; the stream then errors with it).
 *
 * @example `fdWritable((b) => file.write(b), () => file.close())`
 */
export function fdWritable(write: (chunk: Uint8Array) => Promise<number>, close: () => void): WritableStream<Uint8Array> {
  const done = closeOnce(close);
  return new WritableStream<Uint8Array>({
    async write(chunk) {
      try {
        for (let at = 0; at < chunk.length;) at += await write(chunk.subarray(at));
      } catch (e) {
        done();
        throw e;
      }
    },
    close: done,
    abort: done,
  });
}

/**
 * A stream over a reader that closes a descriptor once, when it ends, errors or is cancelled (the
 * runtimes' own streams over a descriptor they did not open leave it open). `inner` may be a reader already taken.
 * `read` reads one chunk from it
 * (default: the reader's own read; a reader that races something else, e.g. an abort, can throw instead).
 *
 * @example `closingStream(inner, () => closeSync(fd))`
 */
export function closingStream(
  inner: ReadableStream<Uint8Array> | ReadableStreamDefaultReader<Uint8Array>,
  close: () => void,
  read: (r: ReadableStreamDefaultReader<Uint8Array>) => ReturnType<ReadableStreamDefaultReader<Uint8Array>["read"]> = (r) => r.read(),
): ReadableStream<Uint8Array> {
  const reader = inner instanceof ReadableStream ? inner.getReader() : inner;
  const done = closeOnce(close);
  return new ReadableStream<Uint8Array>({
    async pull(c) {
      try {
        const r = await read(reader);
        if (r.done) {
          done();
          c.close();
        } else c.enqueue(r.value);
      } catch (e) {
        done();
        c.error(e);
      }
    },
    async cancel(reason) {
      await reader.cancel(reason).catch(() => {});
      done();
    },
  }, { highWaterMark: 0 });
}

/**
 * A {@linkcode Runtime} from a runtime's own spawn, with `options.signal`
 * wired the same way for every runtime: aborting kills the child with SIGKILL.
 *
 * @example `export const denoRuntime = defineRuntime("deno", spawnWithDenoCommand, openDenoFifo)`
 */
export function defineRuntime(name: RuntimeName, spawn: SpawnFn, openFifo: FifoFn = noFifo): Runtime {
  return {
    name,
    openFifo: openFifo as Runtime["openFifo"],
    async spawn(cmd: string, args: readonly string[], options: SpawnOptions = {}): Promise<ChildProcess> {
      const child = await spawn(cmd, args, options);
      killOnAbort(options.signal, child);
      return child;
    },
  };
}

/**
 * Kills `child` with SIGKILL when `signal` aborts (at once if it already has).
 * The listener goes when the child exits, so a long-lived signal shared by
 * many children does not collect them.
 *
 * @example `killOnAbort(options.signal, child)`
 */
export function killOnAbort(signal: AbortSignal | undefined, child: Pick<ChildProcess, "kill" | "status">): void {
  if (signal === undefined) return;
  const kill = () => child.kill("SIGKILL");
  if (signal.aborted) return kill();
  signal.addEventListener("abort", kill, { once: true });
  const forget = () => signal.removeEventListener("abort", kill);
  child.status.then(forget, forget);
}

/**
 * Normalises an exit: a signal wins over the shell-style 128+n code.
 *
 * @example `exitStatus(null, "SIGTERM") // { code: null, signal: "SIGTERM" }`
 */
export function exitStatus(code: number | null, signal: string | number | null): ExitStatus {
  if (signal !== null && signal !== undefined && signal !== "") {
    return { code: null, signal: typeof signal === "number" ? `SIG${signal}` : signal };
  }
  return { code, signal: null };
}

/**
 * A {@linkcode Stdio} in the spelling of `node:child_process` and `Bun.spawn`
 * (`"pipe"`, `"ignore"`, `"inherit"`).
 *
 * @example `nodeStdio(undefined, "piped") // "pipe"`
 */
export function nodeStdio(s: Stdio | undefined, fallback: Stdio): "pipe" | "ignore" | "inherit" {
  const v = s ?? fallback;
  return v === "piped" ? "pipe" : v === "null" ? "ignore" : "inherit";
}

/** The error every shim gives for a binary that is not there. @example `throw binaryNotFound("bwrap", e)` */
export function binaryNotFound(cmd: string, cause: unknown): NotFoundError {
  return new NotFoundError(`binary not found: ${cmd} (install it or put it on PATH)`, { cause, details: { binary: cmd } });
}
