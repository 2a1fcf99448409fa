/**
 * The command line's host side: this process's standard streams as Web Streams (with
 * backpressure), host files as streams, and exiting once output is flushed. Everything goes
 * through `node:process` and `node:fs`, which Deno, Bun and Node all provide.
 *
 * @example Printing through the stream
 * ```ts
 * import { stdoutStream } from "./io.ts";
 * const w = stdoutStream().getWriter();
 * await w.write(new TextEncoder().encode("hi\n"));
 * w.releaseLock();
 * ```
 * @module
 */
import { open } from "node:fs/promises";
import process from "node:process";

function writerFor(s: NodeJS.WriteStream): WritableStream<Uint8Array> {
  return new WritableStream<Uint8Array>({
    write: (chunk) =>
      new Promise<void>((resolve, reject) => {
        s.write(chunk, (e) => e ? reject(e) : resolve());
      }),
  });
}

/** This process's stdout as a stream; each write resolves once the bytes were handed on. @example `await stream.pipeTo(stdoutStream())` */
export function stdoutStream(): WritableStream<Uint8Array> {
  return writerFor(process.stdout);
}

/** This process's stderr as a stream. @example `stderrStream()` */
export function stderrStream(): WritableStream<Uint8Array> {
  return writerFor(process.stderr);
}

/** Writes text to stdout and waits until it was handed on. @example `await print("done\n")` */
export function print(text: string): Promise<void> {
  return new Promise((resolve) => process.stdout.write(text, () => resolve()));
}

/** Writes text to stderr and waits until it was handed on. @example `await printErr("warning\n")` */
export function printErr(text: string): Promise<void> {
  return new Promise((resolve) => process.stderr.write(text, () => resolve()));
}

/** Whether stderr is a terminal (progress lines go there only then). @example `stderrIsTty()` */
export function stderrIsTty(): boolean {
  return process.stderr.isTTY === true;
}

/** Whether stdin is a terminal. @example `stdinIsTty()` */
export function stdinIsTty(): boolean {
  return process.stdin.isTTY === true;
}

/** This process's stdin as a stream (one chunk per pull, so a slow consumer slows the reading). @example `await stdinStream().pipeTo(p.stdin)` */
export function stdinStream(): ReadableStream<Uint8Array> {
  let it: AsyncIterator<Uint8Array | string> | undefined;
  return new ReadableStream<Uint8Array>({
    async pull(c) {
      it ??= process.stdin[Symbol.asyncIterator]();
      const r = await it.next();
      if (r.done) return c.close();
      c.enqueue(typeof r.value === "string" ? new TextEncoder().encode(r.value) : new Uint8Array(r.value));
    },
    async cancel() {
      await it?.return?.();
      process.stdin.destroy();
    },
  }, { highWaterMark: 0 });
}

/** A host file as a stream of 256 KiB chunks (the one `files.upload` reads with). */
export { hostFileStream } from "../transfer.ts";

/**
 * A host file as a stream: by default a new one (refused if anything, a symlink included, is
 * already there); `exclusive: false` replaces a file at a path the user named.
 *
 * @example `await stream.pipeTo(await newHostFile("/tmp/out", 0o644))`
 */
export async function newHostFile(path: string, mode: number, exclusive = true): Promise<WritableStream<Uint8Array>> {
  const h = await open(path, exclusive ? "wx" : "w", mode & 0o777);
  return new WritableStream<Uint8Array>({
    async write(chunk) {
      let at = 0;
      while (at < chunk.length) at += (await h.write(chunk, at, chunk.length - at)).bytesWritten;
    },
    close: () => h.close(),
    abort: () => h.close(),
  });
}

/** Flushes stdout and stderr, then exits with `code`. @example `await exitWith(0)` */
export async function exitWith(code: number): Promise<never> {
  await Promise.all([print(""), printErr("")]);
  process.exit(code);
}
