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

/** A wrapped output: the stream, when it is done, and ways to end it. */
export interface GuestOutput {
  stream: ReadableStream<Uint8Array>;
  /** Resolves when the stream ended, errored or was cancelled. */
  done: Promise<void>;
  /** Ends the stream at what was read so far, even if something still holds the pipe open. */
  release: () => Promise<void>;
  /**
   * Takes everything left in the pipe into the stream's queue, past its high-water mark, so the
   * stream ends without a reader. Only once the writers are gone: what is left is then at most a
   * pipe's capacity, so memory stays bounded.
   */
  drain: () => void;
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
  let ended = false;
  let ctl!: ReadableStreamDefaultController<Uint8Array>;
  // one read at a time, whether a reader's pull or a drain asks for it, so chunks keep their order
  let chain: Promise<void> = Promise.resolve();
  const step = (): Promise<void> =>
    chain = chain.then(async () => {
      if (ended) return;
      try {
        const { value, done: end } = await reader.read();
        if (ended) return;
        if (!end) return ctl.enqueue(value);
        ended = true;
        await exited;
        const e = failure();
        if (e) ctl.error(e);
        else ctl.close();
      } catch (e) {
        if (ended) return;
        ended = true;
        ctl.error(new TransportError(`reading guest output failed: ${(e as Error).message}`, { cause: e }));
      }
      finish();
    });
  const stream = new ReadableStream<Uint8Array>({
    start: (c) => void (ctl = c),
    pull: () => step(),
    cancel: async (reason) => {
      ended = true;
      await reader.cancel(reason).catch(() => {});
      finish();
    },
  }, OUTPUT_BUFFER);
  const drain = async () => {
    while (!ended) await step();
  };
  return { stream, done, release: () => reader.cancel().catch(() => {}), drain: () => void drain() };
}
