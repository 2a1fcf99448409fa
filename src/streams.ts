/**
 * Small Web Stream helpers the SDK shares.
 *
 * @example
 * ```ts
 * import { toStream, collectBytes } from "./streams.ts";
 * const bytes = await collectBytes(toStream("hi")); // Uint8Array [104, 105]
 * ```
 * @module
 */
import { invalid } from "./errors.ts";
import { closingStream } from "./runtime/spawn.ts";

/**
 * Turns text, bytes, a Blob or a stream into a `ReadableStream<Uint8Array>`. A stream
 * is passed through {@linkcode byteChunks}, so a chunk that is not bytes errors
 * it (and whoever reads it) with INVALID_INPUT naming `field`.
 *
 * @example `toStream("hello")`
 */
export function toStream(data: unknown, field = "data"): ReadableStream<Uint8Array> {
  if (typeof data === "string") data = new TextEncoder().encode(data);
  if (data instanceof ArrayBuffer) data = new Uint8Array(data);
  else if (ArrayBuffer.isView(data) && !(data instanceof Uint8Array)) data = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof Uint8Array) {
    const bytes = data;
    return new ReadableStream<Uint8Array>({
      start(c) {
        if (bytes.length > 0) c.enqueue(bytes);
        c.close();
      },
    });
  }
  if (typeof Blob !== "undefined" && data instanceof Blob) data = data.stream();
  if (data instanceof ReadableStream) {
    if (data.locked) throw invalid(field, "is a ReadableStream that is locked: something else is already reading it");
    return data.pipeThrough(byteChunks(field));
  }
  throw invalid(
    field,
    "must be a string, a Uint8Array (or another ArrayBufferView, or an ArrayBuffer), a Blob or a ReadableStream<Uint8Array>",
  );
}

/** What a chunk is, for an error message: "string", "number", "null", "Array", "object (Foo)". */
function describe(chunk: unknown): string {
  if (chunk === null) return "null";
  if (typeof chunk !== "object") return typeof chunk;
  if (Array.isArray(chunk)) return "Array";
  const name = (chunk as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof name === "string" && name !== "" && name !== "Object" ? `object (${name})` : "object";
}

/**
 * A transform that lets byte chunks through — a `Uint8Array`, another
 * `ArrayBufferView` or an `ArrayBuffer`, as `Uint8Array` — and errors both of
 * its sides on anything else with an INVALID_INPUT naming `field`, the chunk's
 * index and its type (`details.chunkIndex`, `details.chunkType`). Whoever reads
 * it sees the error, not an early end, so a write it feeds is aborted.
 *
 * @example `source.pipeThrough(byteChunks("data"))`
 */
export function byteChunks(field: string): TransformStream<unknown, Uint8Array> {
  let index = 0;
  return new TransformStream<unknown, Uint8Array>({
    transform(chunk, c): void {
      const i = index++;
      if (chunk instanceof Uint8Array) return c.enqueue(chunk);
      if (ArrayBuffer.isView(chunk)) return c.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      if (chunk instanceof ArrayBuffer) return c.enqueue(new Uint8Array(chunk));
      const type = describe(chunk);
      const e = invalid(
        field,
        `chunk ${i} of the stream is ${/^[aeiou]/i.test(type) ? "an" : "a"} ${type}, not bytes: a byte stream carries Uint8Array ` +
          `(or ArrayBuffer / ArrayBufferView) chunks; pipe text through a TextEncoderStream`,
      );
      Object.assign(e.details, { chunkIndex: i, chunkType: type });
      throw e;
    },
  });
}

/**
 * Reads a stream to its end into one `Uint8Array`; past `maxBytes` it cancels the stream and throws `tooBig()`.
 * @example `await collectBytes(stream)`
 */
export async function collectBytes(
  stream: ReadableStream<Uint8Array>,
  maxBytes = Infinity,
  tooBig: () => Error = () => new RangeError(`more than ${maxBytes} bytes`),
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const chunk of stream) {
    parts.push(chunk);
    n += chunk.length;
    // (leaving the loop cancels the stream, which ends its producer)
    if (n > maxBytes) throw tooBig();
  }
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Reads a stream to its end as UTF-8 text. @example `await collectText(p.stdout)` */
export async function collectText(stream: ReadableStream<Uint8Array>): Promise<string> {
  return new TextDecoder().decode(await collectBytes(stream));
}

/**
 * Waits for `p` unless `signal` aborts first: then rejects at once with the signal's reason (what `p`
 * stands for is left to end by itself). Without a signal, `p` itself.
 *
 * @example `const info = await untilAborted(sb.files.stat("/app"), AbortSignal.timeout(5000))`
 */
export function untilAborted<T>(p: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) {
    p.catch(() => {});
    return Promise.reject(signal.reason);
  }
  let onAbort: () => void = () => {};
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
  });
  return Promise.race([p, aborted]).finally(() => signal.removeEventListener("abort", onAbort));
}

/**
 * The stream `opening` gives, cut off by `signal`: an abort rejects a pending open or read at once with the
 * signal's reason and cancels the stream underneath (which ends what produces it: in a sandbox, its
 * helper is killed) without waiting for that. So guest code that stops the producer (SIGSTOP) cannot hold
 * the caller. Without a signal, the stream itself.
 *
 * @example `const s = await abortable(engineFiles.readStream("/big", {}), AbortSignal.timeout(5000))`
 */
export async function abortable(opening: Promise<ReadableStream<Uint8Array>>, signal?: AbortSignal): Promise<ReadableStream<Uint8Array>> {
  if (!signal) return await opening;
  let src: ReadableStream<Uint8Array>;
  try {
    src = await untilAborted(opening, signal);
  } catch (e) {
    // opened after the abort: nobody will read it
    opening.then((s) => s.cancel(signal.reason).catch(() => {}), () => {});
    throw e;
  }
  // an abort cancels the source at once, whether or not anyone is reading
  const held = src.getReader();
  const onAbort = () => void held.cancel(signal.reason).catch(() => {});
  signal.addEventListener("abort", onAbort, { once: true });
  return closingStream(held, () => signal.removeEventListener("abort", onAbort), async (reader) => {
    try {
      const r = await untilAborted(reader.read(), signal);
      // the abort's cancel may end a pending read first: an abort is an error, never an end
      if (signal.aborted) throw signal.reason;
      return r;
    } catch (e) {
      if (signal.aborted) reader.cancel(signal.reason).catch(() => {});
      throw e;
    }
  });
}

/** A stream that errors with `error` when read (used where there is nothing honest to return). @example `erroringStream(new UnsupportedError("…"))` */
export function erroringStream<T>(error: Error): ReadableStream<T> {
  return new ReadableStream<T>({ pull: (c) => c.error(error) });
}

/**
 * A UTF-8 decoder as a transform from bytes to text. It is `TextDecoderStream`, typed as
 * `TransformStream<Uint8Array, string>`: where a project has both the DOM library and @types/node,
 * `bytes.pipeThrough(new TextDecoderStream())` does not type-check (the two declare its writable side differently).
 *
 * @example `stdout.pipeThrough(utf8Decoder())`
 */
export function utf8Decoder(): TransformStream<Uint8Array, string> {
  return new TextDecoderStream() as unknown as TransformStream<Uint8Array, string>;
}

/**
 * A transform from bytes (or text) to lines, as `TextLineStream` does: UTF-8
 * is decoded across chunk boundaries (a character split between chunks stays
 * whole), lines end at `\n` or `\r\n` (neither is kept), and a last line
 * without a newline is still given. Use it on a process's output.
 *
 * @example Reading a process's output line by line
 * ```ts
 * import assert from "node:assert/strict";
 * import { lines, Sandbox } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * const p = await sb.commands.start(["sh", "-c", "echo one; printf 'two\\r\\nthree'"]);
 * const got: string[] = [];
 * for await (const line of p.stdout.pipeThrough(lines())) got.push(line);
 * assert.deepEqual(got, ["one", "two", "three"]);
 * ```
 */
export function lines(): TransformStream<Uint8Array | string, string> {
  const decoder = new TextDecoder();
  let carry = "";
  const emit = (text: string, c: TransformStreamDefaultController<string>) => {
    carry += text;
    let start = 0;
    for (let nl = carry.indexOf("\n"); nl !== -1; nl = carry.indexOf("\n", start)) {
      const line = carry.slice(start, nl);
      start = nl + 1;
      c.enqueue(line.endsWith("\r") ? line.slice(0, -1) : line);
    }
    carry = carry.slice(start);
  };
  return new TransformStream<Uint8Array | string, string>({
    transform(chunk, c) {
      emit(typeof chunk === "string" ? chunk : decoder.decode(chunk, { stream: true }), c);
    },
    flush(c) {
      emit(decoder.decode(), c);
      if (carry !== "") c.enqueue(carry.endsWith("\r") ? carry.slice(0, -1) : carry);
      carry = "";
    },
  });
}
