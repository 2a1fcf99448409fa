/**
 * A guest process's output as the caller sees it: a stream with a small queue (so backpressure
 * reaches the guest and memory stays bounded), that ends after its last byte, or errors with a
 * typed TRANSPORT error when the sandbox died under it — never a quiet end that looks complete.
 *
 * @example
 * ```ts
 * import { OUTPUT_BUFFER } from "./output.ts";
 * console.log(OUTPUT_BUFFER.highWaterMark); // 1048576
 * ```
 * @module
 */
import { TransportError } from "../../errors.ts";
import type { ByteReader } from "./core.ts";

/**
 * How much output each stream holds for a reader who is not reading yet: a process that prints up
 * to this much and exits has a `status` without anyone reading; past it, the process waits for the
 * reader (backpressure), and memory stays bounded.
 */
export const OUTPUT_BUFFER: QueuingStrategy<Uint8Array> = new ByteLengthQueuingStrategy({ highWaterMark: 1 << 20 });

/** A wrapped output: the stream, when it is done, and a way to end it at what was read so far. */
export interface GuestOutput {
  stream: ReadableStream<Uint8Array>;
  /** Resolves when the stream ended, errored or was cancelled. */
  done: Promise<void>;
  /** Ends the stream at what was read so far, even if something still holds the pipe open. */
  release: () => Promise<void>;
}

/**
 * Wraps a child's output. At its end, `failure()` (awaited after `exited`) says whether the end is
 * a sandbox that died (the stream then errors with that) or the real end.
 *
 * @example `const out = guestOutput(reader, exited, () => sb.deathError())`
 */
export function guestOutput(
  reader: ByteReader,
  exited: Promise<unknown>,
  failure: () => Error | null,
): GuestOutput {
  let finish!: () => void;
  const done = new Promise<void>((r) => finish = r);
  const stream = new ReadableStream<Uint8Array>({
    pull: async (c) => {
      try {
        const { value, done: end } = await reader.read();
        if (!end) return c.enqueue(value);
        await exited;
        const e = failure();
        if (e) c.error(e);
        else c.close();
      } catch (e) {
        c.error(new TransportError(`reading guest output failed: ${(e as Error).message}`, { cause: e }));
      }
      finish();
    },
    cancel: async (reason) => {
      await reader.cancel(reason).catch(() => {});
      finish();
    },
  }, OUTPUT_BUFFER);
  return { stream, done, release: () => reader.cancel().catch(() => {}) };
}
