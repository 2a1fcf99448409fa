/**
 * The job a runner's job process receives (see `sh/runner.pl`): the payload's length in decimal, a
 * newline, then the payload, its fields separated by NUL. No field can hold a NUL (argv, env and
 * paths are checked for them up front), so there are no escapes at all: any argv or env string
 * arrives byte for byte, and names that are not UTF-8 (see `src/filenames.ts`) arrive as their bytes. The
 * job's process reads it in one `read`, sets up the job's descriptors, cwd and environment itself
 * and execs the program: no shell reads or evaluates anything of it.
 *
 * @example A command's frame
 * ```ts
 * import { jobFrame } from "./job.ts";
 * const text = new TextDecoder().decode(jobFrame({ kind: "command", argv: ["echo", "a\nb"], env: { A: "1" }, cwd: "/" }, true));
 * console.log(JSON.stringify(text)); // "24\nc\u00001\u0000/\u00001\u0000A=1\u00002\u0000echo\u0000a\nb\u00000"
 * ```
 * @module
 */
import { encodeName } from "../../filenames.ts";

/** What a runner is asked to do: a guest command, or one file-agent operation. */
export type Job =
  | {
    kind: "command";
    argv: string[];
    env: Record<string, string>;
    cwd: string;
    /** Exec this instead of argv, once argv's program was found (the PTY helper, which gets argv itself). */
    via?: string[];
  }
  | { kind: "agent"; op: string; args: string[]; nonce: string };

/**
 * The bytes of a job for a runner's next job process (`sh/runner.pl`): `c STDIN CWD NENV NAME=VALUE…
 * NARGV ARGV… NVIA VIA…` for a command, `a STDIN NONCE OP ARGS…` for a file operation, NUL-separated,
 * after the payload's length and a newline. With `stdin` the job reads its slot's stdin fifo, else
 * /dev/null.
 *
 * @example `jobFrame({ kind: "agent", op: "stat", args: ["/app"], nonce: "ab12" }, false)`
 */
export function jobFrame(job: Job, stdin: boolean): Uint8Array {
  let fields: string[];
  if (job.kind === "agent") {
    fields = ["a", stdin ? "1" : "0", job.nonce, job.op, ...job.args];
  } else {
    const env: string[] = [];
    for (const [k, v] of Object.entries(job.env)) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new TypeError(`not an environment variable name: ${JSON.stringify(k)}`);
      env.push(`${k}=${v}`);
    }
    const via = job.via ?? [];
    const argv = job.argv;
    fields = ["c", stdin ? "1" : "0", job.cwd, `${env.length}`, ...env, `${argv.length}`, ...argv, `${via.length}`, ...via];
  }
  for (const f of fields) if (f.includes("\0")) throw new TypeError("a job's field holds a NUL byte");
  const payload = encodeName(fields.join("\0"));
  const head = new TextEncoder().encode(`${payload.length}\n`);
  const frame = new Uint8Array(head.length + payload.length);
  frame.set(head);
  frame.set(payload, head.length);
  return frame;
}
