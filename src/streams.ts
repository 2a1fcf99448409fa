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

/** Turns text, bytes or a stream into a `ReadableStream<Uint8Array>`. @example `toStream("hello")` */
export function toStream(data: unknown, field = "data"): ReadableStream<Uint8Array> {
  if (typeof data === "string") data = new TextEncoder().encode(data);
  if (data instanceof Uint8Array) {
    const bytes = data;
    return new ReadableStream<Uint8Array>({
      start(c) {
        if (bytes.length > 0) c.enqueue(bytes);
        c.close();
      },
    });
  }
  if (data instanceof ArrayBuffer) return toStream(new Uint8Array(data), field);
  if (data instanceof ReadableStream) return data as ReadableStream<Uint8Array>;
  throw invalid(field, "must be a string, a Uint8Array or a ReadableStream<Uint8Array>");
}

/** Reads a stream to its end into one `Uint8Array`. @example `await collectBytes(stream)` */
export async function collectBytes(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const chunk of stream) {
    parts.push(chunk);
    n += chunk.length;
  }
  if (parts.length === 1) return parts[0];
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

/** A stream that errors with `error` when read (used where there is nothing honest to return). @example `erroringStream(new UnsupportedError("…"))` */
export function erroringStream<T>(error: Error): ReadableStream<T> {
  return new ReadableStream<T>({ pull: (c) => c.error(error) });
}
