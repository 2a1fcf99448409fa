/**
 * What the parts of a local sandbox (processes, files, logs) use of it: one small interface, so
 * each part is a file of its own and none reaches into another.
 *
 * @example
 * ```ts
 * import type { SandboxCore } from "./core.ts";
 * const id = (c: SandboxCore) => c.id;
 * ```
 * @module
 */
import { collectBytes, collectText } from "../../streams.ts";
import type { Job } from "./job.ts";
import type { Runner, RunnerJob } from "./runners.ts";
import type { Meta, SandboxDir } from "./state.ts";

/** A sandbox as its processes and files see it. */
export interface SandboxCore {
  readonly id: string;
  readonly dir: SandboxDir;
  readonly meta: Meta;
  /** Starts a job on a runner; its stdin is a stream for the caller when `keepStdin` (else /dev/null). */
  exec(job: Job, keepStdin: boolean, what: string): Promise<RunnerJob>;
  /** Signals a runner's whole tree (its cgroup, or its session without cgroups). */
  killTree(r: Runner, signal: string): Promise<void>;
  /** After a job ended: kills what it left, removes its group; resolves to the sandbox's OOM-kill count. */
  reap(cg: string | null): Promise<number>;
  /** Why a stream or operation that just ended cannot be trusted (the sandbox died), or null. */
  deathError(what: string): Error | null;
}

/** The part of a stream reader the engine uses. */
export interface ByteReader {
  read(): ReturnType<ReadableStreamDefaultReader<Uint8Array>["read"]>;
  cancel(reason?: unknown): Promise<void>;
}

/**
 * A reader that can take a single byte off the front (the runner's handshake and acknowledgement)
 * and hands the rest of that chunk back on the next read.
 *
 * @example `const r = new PeekReader(stream); const b = await r.byte();`
 */
export class PeekReader implements ByteReader {
  #rest: Uint8Array | undefined;
  #reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
  constructor(readonly stream: ReadableStream<Uint8Array>) {}
  /** The stream's reader, taken when first needed (a held reader keeps Bun's event loop alive). */
  get inner(): ReadableStreamDefaultReader<Uint8Array> {
    return this.#reader ??= this.stream.getReader();
  }
  /**
   * Lets go of the stream's reader between reads (an idle runner must not keep this process alive);
   * the next read takes it again. Call only with no read pending.
   */
  release(): void {
    this.#reader?.releaseLock();
    this.#reader = null;
  }
  /** The next byte, or null at the end. */
  async byte(): Promise<number | null> {
    // a pipe that keeps handing back empty chunks is treated as ended, never spun on
    for (let empty = 0; empty < 16; empty++) {
      const r = await this.read();
      if (r.done) return null;
      if (r.value.length === 0) continue;
      if (r.value.length > 1) this.#rest = r.value.subarray(1);
      return r.value[0]!;
    }
    return null;
  }
  read(): ReturnType<ReadableStreamDefaultReader<Uint8Array>["read"]> {
    const rest = this.#rest;
    if (rest) {
      this.#rest = undefined;
      return Promise.resolve({ done: false, value: rest });
    }
    return this.inner.read();
  }
  cancel(reason?: unknown): Promise<void> {
    this.#rest = undefined;
    return this.inner.cancel(reason);
  }
}

/** A reader as a stream (for the shared collectors in `src/streams.ts`). */
function asStream(reader: ByteReader): ReadableStream<Uint8Array> {
  return new ReadableStream({
    pull: async (c) => {
      const r = await reader.read();
      if (r.done) c.close();
      else c.enqueue(r.value);
    },
    cancel: (reason) => reader.cancel(reason),
  });
}

/** Reads a reader to its end as UTF-8 text. @example `await readText(reader)` */
export function readText(reader: ByteReader): Promise<string> {
  return collectText(asStream(reader));
}

/** Reads a reader to its end as bytes. @example `await readBytes(reader)` */
export function readBytes(reader: ByteReader): Promise<Uint8Array> {
  return collectBytes(asStream(reader));
}
