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
import type { Job } from "./job.ts";
import type { Runner } from "./runners.ts";
import type { Meta, SandboxDir } from "./state.ts";

/** A sandbox as its processes and files see it. */
export interface SandboxCore {
  readonly id: string;
  readonly dir: SandboxDir;
  readonly meta: Meta;
  /** Starts a job on a runner; its stdin stays open for the caller when `keepStdin`. */
  exec(job: Job, keepStdin: boolean, what: string): Promise<Runner>;
  /** Signals a runner's whole tree (its cgroup, or its session without cgroups). */
  killTree(r: Runner, signal: string): Promise<void>;
  /** After a job ended: kills what it left, removes its group; resolves to the sandbox's OOM-kill count. */
  reap(cg: string | null): Promise<number>;
  /** Why a stream or operation that just ended cannot be trusted (the sandbox died), or null. */
  deathError(what: string): Error | null;
}

/** Reads a reader to its end as UTF-8 text. @example `await readText(reader)` */
export async function readText(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<string> {
  const dec = new TextDecoder();
  let s = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return s + dec.decode();
    s += dec.decode(value, { stream: true });
  }
}

/** Reads a reader to its end as bytes. @example `await readBytes(reader)` */
export async function readBytes(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    parts.push(value);
    n += value.length;
  }
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
