/**
 * A sandbox's event log as a stream: the supervisor's and the SDK's JSON lines from
 * `events.jsonl`. Following polls every 100 ms: Deno and Bun offer no portable file-change
 * notification that works with explicit permissions only (`fs.watch` needs more on Deno and misses
 * appends on some filesystems), and a poll of an open descriptor costs one `fstat`.
 *
 * @example
 * ```ts
 * import { logStream } from "./logs.ts";
 * // for await (const ev of logStream(dir, id, { follow: false })) console.log(ev.type);
 * console.log(typeof logStream);
 * ```
 * @module
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { NotFoundError } from "../../errors.ts";
import type { LogEvent } from "../../types.ts";
import type { SandboxDir } from "./state.ts";

/** The log of one sandbox. @example `logStream(dir, "sbx-…", { follow: true })` */
export function logStream(dir: SandboxDir, id: string, opts: { follow: boolean }): ReadableStream<LogEvent> {
  // An open descriptor keeps the log readable after the supervisor deletes the folder, so the
  // last events (destroy, TTL expiry) still reach a follower before its stream ends.
  let fd: number | undefined;
  let offset = 0;
  let seq = 0;
  let carry = "";
  const readNew = (): LogEvent[] => {
    if (fd === undefined) return [];
    const size = fstatSync(fd).size;
    if (size <= offset) return [];
    const buf = new Uint8Array(size - offset);
    const n = readSync(fd, buf, 0, buf.length, offset);
    offset += n;
    const lines = (carry + new TextDecoder().decode(buf.subarray(0, n))).split("\n");
    carry = lines.pop() ?? "";
    const evs: LogEvent[] = [];
    for (const l of lines) {
      if (!l) continue;
      try {
        evs.push({ seq: seq++, ...JSON.parse(l) });
      } catch { /* a torn line is skipped */ }
    }
    return evs;
  };
  const close = () => {
    if (fd !== undefined) closeSync(fd);
    fd = undefined;
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  return new ReadableStream<LogEvent>({
    start: (c) => {
      try {
        fd = openSync(dir.file("events.jsonl"), "r");
      } catch {
        c.error(new NotFoundError(`sandbox ${id} is gone; its log went with it`, { details: { id: id } }));
      }
    },
    pull: async (c) => {
      for (;;) {
        const gone = !dir.exists();
        const evs = readNew();
        if (evs.length) {
          for (const e of evs) c.enqueue(e);
          return;
        }
        if (!opts.follow || gone) {
          close();
          return c.close();
        }
        await new Promise((r) => timer = setTimeout(r, 100));
      }
    },
    cancel: () => {
      clearTimeout(timer);
      close();
    },
  });
}
