/**
 * The job a runner's job process receives (see `sh/spare.sh`): a line with the job's line count,
 * then that many lines of POSIX shell built only from single-quoted words (`'…'` keeps every byte but
 * `'`, which is written `'\''`; newlines stay inside the quotes). There are no in-band escapes: any
 * argv or env string without NUL arrives byte for byte, and names that are not UTF-8 (see
 * `bytes.ts`) arrive as their bytes.
 *
 * @example A command's frame
 * ```ts
 * import { jobFrame } from "./job.ts";
 * const text = new TextDecoder().decode(jobFrame({ kind: "command", argv: ["echo", "a\nb"], env: {}, cwd: "/" }, true));
 * console.log(text); // "5\ncd '/' 2>/dev/null || { printf C; exit 125; }\ncommand -v 'echo' …\nprintf X\nexec 'echo' 'a\nb' <&4 >&5 4<&- 5>&-\n"
 * ```
 * @module
 */
import { encodeName } from "./bytes.ts";

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

/** One shell word, single-quoted. @example `shellWord("it's") // "'it'\\''s'"` */
export function shellWord(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/**
 * The bytes of a job for a runner's next job process (`sh/spare.sh`): the script's line count, then
 * the script. Descriptors while it runs: 1 the runner's report pipe, 4 and 5 the job's stdin and
 * stdout fifos (2 is its stderr fifo already), moved onto 0 and 1 (or /dev/null onto 0, without
 * `stdin`) when the guest's program, or the file agent, starts.
 *
 * @example `jobFrame({ kind: "agent", op: "stat", args: ["/app"], nonce: "ab12" }, false)`
 */
export function jobFrame(job: Job, stdin: boolean): Uint8Array {
  const io = `${stdin ? "<&4" : "</dev/null"} >&5 4<&- 5>&-`;
  let script: string;
  if (job.kind === "agent") {
    script = `exec ${io}\nMVM_NONCE=${shellWord(job.nonce)}; mvm_agent ${[job.op, ...job.args].map(shellWord).join(" ")}`;
  } else {
    // before anything of the guest runs, the job's shell says on the runner's report pipe (which only
    // the SDK's processes hold: they are not dumpable, and the guest's program gets it replaced) how
    // the start went: C the cwd is not there, N the program is not found, X it execs now; so no output
    // of the guest can pass for either failure
    const parts = [`cd ${shellWord(job.cwd)} 2>/dev/null || { printf C; exit 125; }`];
    // dash refuses a non-numeric OPTIND; env(1) sets it instead
    const viaEnv: string[] = [];
    for (const [k, v] of Object.entries(job.env)) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new TypeError(`not an environment variable name: ${JSON.stringify(k)}`);
      if (k === "OPTIND") viaEnv.push(shellWord(`${k}=${v}`));
      else parts.push(`export ${k}=${shellWord(v)}`);
    }
    parts.push(`command -v ${shellWord(job.argv[0] ?? "")} >/dev/null 2>&1 || { printf N; exit 127; }`);
    parts.push("printf X");
    if (job.via) parts.push(`exec ${job.via.map(shellWord).join(" ")} ${io}`);
    else parts.push(`exec ${viaEnv.length ? `/.mvm/env ${viaEnv.join(" ")} ` : ""}${job.argv.map(shellWord).join(" ")} ${io}`);
    script = parts.join("\n");
  }
  const lines = script.split("\n").length;
  return encodeName(`${lines}\n${script}\n`);
}
