/**
 * Commands on a pseudo-terminal (`commands.start(argv, { pty: true })`), the host's side. A runner
 * execs the PTY helper (`sh/pty.pl`, run by the execute-only `/.mvm/perl` with an empty
 * environment) instead of the program; the helper opens a terminal of the sandbox's own devpts, runs
 * the program on it as its controlling terminal, and relays the terminal's output on stdout. Its
 * stdin carries frames only the host writes (the job's stdin fifo, which guest code cannot open: the
 * helper is not dumpable, and the fifo has no path in the sandbox): the start (argv, environment, size), keystrokes, size changes and the end
 * of input. So a resize reaches only its own command, and nothing guest code writes is a frame.
 *
 * @example The frames a PTY command's stdin carries
 * ```ts
 * import { ptyFrame } from "./pty.ts";
 * const f = ptyFrame("W", new Uint8Array([0, 80, 0, 24])); // a new size: 80 columns, 24 rows
 * console.log(f.length); // 9
 * ```
 * @module
 */
import { InvalidInputError, TransportError } from "../../errors.ts";
import { collectText } from "../../streams.ts";
import { encodeName } from "../../filenames.ts";
import type { PeekReader } from "./core.ts";
import { PTY_PL } from "./scripts.gen.ts";

/** What a runner execs for a PTY command: the helper, on the execute-only perl, with no environment of the command's. */
export const PTY_VIA: readonly string[] = ["/.mvm/env", "-i", "/.mvm/perl", "-e", PTY_PL];

/** The terminal a command gets when the caller gives no size. */
export const DEFAULT_PTY_SIZE = { cols: 80, rows: 24 } as const;

/** How long the helper may take to make the terminal and fork the program. */
const PTY_START_MS = 10_000;

/** The largest keystroke frame: the helper refuses frames over 1 MiB; input is split well below that. */
const MAX_DATA_FRAME = 64 * 1024;

/** One frame for the helper's stdin: type, length (4 bytes, big-endian), payload. @example `ptyFrame("E")` */
export function ptyFrame(type: "S" | "D" | "W" | "E", payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const f = new Uint8Array(5 + payload.length);
  f[0] = type.charCodeAt(0);
  new DataView(f.buffer).setUint32(1, payload.length);
  f.set(payload, 5);
  return f;
}

/** The size frame. @example `sizeFrame(120, 40)` */
function sizeFrame(cols: number, rows: number): Uint8Array {
  const p = new Uint8Array(4);
  new DataView(p.buffer).setUint16(0, cols);
  new DataView(p.buffer).setUint16(2, rows);
  return ptyFrame("W", p);
}

/**
 * Sends the start frame and waits for the helper's P (the terminal is made, the program forked):
 * nothing of the program's output can come before it, so guest output cannot pass for it. A helper
 * that could not make a terminal is a TransportError with its reason. `r` is the job's stdin, its
 * stdout (P comes first on it) and stderr, and a way to end the helper.
 *
 * @example `await ptyStart({ stdin, out, stderr, kill }, ["sh"], env, { cols: 80, rows: 24 }, false)`
 */
export async function ptyStart(
  r: { stdin: WritableStream<Uint8Array>; out: PeekReader; stderr: ReadableStream<Uint8Array>; kill: () => void },
  argv: string[],
  env: Record<string, string>,
  size: { cols: number; rows: number },
  forward: boolean,
): Promise<void> {
  const fields = [String(size.cols), String(size.rows), forward ? "1" : "0", String(argv.length), ...argv];
  for (const [k, v] of Object.entries(env)) fields.push(`${k}=${v}`);
  const w = r.stdin.getWriter();
  try {
    await w.write(ptyFrame("S", encodeName(fields.join("\0"))));
  } catch {
    /* the helper is gone: its reason is below */
  } finally {
    w.releaseLock();
  }
  // a helper guest code stopped (same uid: it may signal it, never trace it) is given up after a while
  let timer: ReturnType<typeof setTimeout> | undefined;
  const said = await Promise.race([
    r.out.byte().catch(() => null),
    new Promise<null>((res) => timer = setTimeout(() => res(null), PTY_START_MS)),
  ]).finally(() => clearTimeout(timer));
  if (said === 0x50 /* P */) return;
  r.kill();
  const why = (await collectText(r.stderr).catch(() => "")).trim().split("\n").pop()?.slice(0, 300);
  throw new TransportError(`could not give ${JSON.stringify(argv[0])} a terminal in the sandbox${why ? `: ${why}` : ""}`, {
    details: { program: argv[0] },
  });
}

/**
 * The caller's side of a PTY command's stdin: `stdin` frames what is written as keystrokes (closing
 * it sends the end of input, which the terminal turns into its EOF character in line mode, and keeps
 * the channel for `resize`); `resize` sends a size frame. Frames are written in order through one
 * writer, so a size change never splits keystrokes.
 *
 * @example `const { stdin, resize } = ptyInput(child.stdin)`
 */
export function ptyInput(pipe: WritableStream<Uint8Array>): {
  stdin: WritableStream<Uint8Array>;
  resize: (cols: number, rows: number) => Promise<void>;
  /** Lets the pipe go (the process ended). */
  close: () => void;
} {
  const w = pipe.getWriter();
  let ended = false;
  const send = (f: Uint8Array) => w.write(f);
  const stdin = new WritableStream<Uint8Array>({
    async write(chunk) {
      if (!(chunk instanceof Uint8Array)) {
        throw new InvalidInputError("stdin: a PTY command's stdin takes Uint8Array chunks", { details: { field: "stdin" } });
      }
      for (let at = 0; at < chunk.length; at += MAX_DATA_FRAME) await send(ptyFrame("D", chunk.subarray(at, at + MAX_DATA_FRAME)));
    },
    async close() {
      await send(ptyFrame("E")).catch(() => {});
    },
    async abort() {
      await send(ptyFrame("E")).catch(() => {});
    },
  });
  return {
    stdin,
    resize: async (cols, rows) => {
      if (!ended) await send(sizeFrame(cols, rows)).catch(() => {});
    },
    close: () => {
      ended = true;
      w.abort().catch(() => {});
    },
  };
}
