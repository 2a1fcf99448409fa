/**
 * A guest process through `mvmctl machine proc …`: `proc start` gives a pid token, `proc wait`'s
 * stdout and stderr are the process's streams and its exit code is the guest's (128+signal with
 * `killed by signal N`, 124 with `timed out` as its last stderr line, which is taken off the
 * guest's stderr), `proc stdin` carries the caller's stdin (spawned on the first write or close),
 * `proc signal` / `proc kill` signal it. The CLI's own failure is kept apart: `proc wait` dying of
 * a signal, or exiting 255 with a `mvm: CODE: …` line, is the CLI's (TRANSPORT or that code), and a
 * non-zero exit while the machine is no longer running is a TRANSPORT error, not a result.
 *
 * @example
 * ```ts
 * import { splitCliLine } from "./process.ts";
 * console.log(splitCliLine(new TextEncoder().encode("oops\ntimed out\n")).line); // "timed out"
 * ```
 * @module
 */
import { TransportError, UnsupportedError } from "../../errors.ts";
import type { ChildProcess } from "../../runtime/mod.ts";
import type { ProcessStatus } from "../../types.ts";
import type { EngineProcess, EngineStartOptions } from "../contract.ts";
import { machineArgv, signalName, SIGNALS } from "./argv.ts";
import { cliFailure, type MachineCli, readTail } from "./cli.ts";

/** What a process needs of its machine. */
export interface ProcMachine {
  readonly cli: MachineCli;
  /** The name the verbs address. */
  readonly vm: string;
  /** Whether the machine still runs (asked after a non-zero exit). */
  running(): Promise<boolean>;
  /** Appends an entry about this machine to the SDK side's audit chain; returns its id. */
  record(event: string, data?: Record<string, unknown>): string;
}

/** What each output stream holds for a reader that has not started (as the local engine: 1 MiB). */
const OUTPUT_BUFFER: QueuingStrategy<Uint8Array> = new ByteLengthQueuingStrategy({ highWaterMark: 1 << 20 });

/** How many trailing stderr bytes are held back to find the CLI's own last line. */
const HOLD = 256;

/** Splits the last line off held-back bytes: what stays the guest's, and the line. @example `splitCliLine(bytes).line` */
export function splitCliLine(tail: Uint8Array): { guest: Uint8Array; line: string } {
  let end = tail.length;
  if (end > 0 && tail[end - 1] === 0x0a) end--;
  const start = tail.lastIndexOf(0x0a, end - 1) + 1;
  return { guest: tail.subarray(0, start), line: new TextDecoder().decode(tail.subarray(start, end)) };
}

/** Starts a guest process. @example `await startMachineProcess(m, ["ls"], { env: {} })` */
export async function startMachineProcess(m: ProcMachine, argv: string[], opts: EngineStartOptions): Promise<EngineProcess> {
  const started = performance.now();
  const { stdout } = await m.cli.capture(machineArgv.procStart(m.vm, argv, { env: opts.env, cwd: opts.cwd }));
  const token = new TextDecoder().decode(stdout).trim();
  if (!/^[A-Za-z0-9._:-]{1,128}$/.test(token)) {
    throw new TransportError(`mvmctl machine proc start printed no pid token (got ${JSON.stringify(token.slice(0, 80))})`, {
      details: { argv: [m.cli.config.bin, "machine", "proc", "start", m.vm] },
    });
  }
  const waitArgs = machineArgv.procWait(m.vm, token, opts.timeoutSeconds);
  const wait = await m.cli.spawn(waitArgs);
  let ended = false;

  // stderr: everything but the last HOLD bytes flows at once; those decide at the end
  let held = new Uint8Array(0);
  let cliLine = "";
  let finishErr!: () => void;
  const errDone = new Promise<void>((r) => finishErr = r);
  const errReader = wait.stderr!.getReader();
  const stderr = new ReadableStream<Uint8Array>({
    async pull(c) {
      // a pull that enqueues nothing is not called again: read until something goes out, or the end
      for (;;) {
        const r = await errReader.read().catch(() => ({ done: true as const, value: undefined }));
        if (r.done) {
          const s = await wait.status;
          const { guest, line } = splitCliLine(held);
          const cliOwns = (s.code === 124 && line === "timed out") ||
            (s.code !== null && s.code > 128 && line === `killed by signal ${s.code - 128}`) ||
            (s.code === 255 && /^mvm: [A-Z_]+: /.test(line));
          if (cliOwns) {
            cliLine = line;
            if (guest.length) c.enqueue(guest);
          } else if (held.length) c.enqueue(held);
          c.close();
          finishErr();
          return;
        }
        const joined = new Uint8Array(held.length + r.value.length);
        joined.set(held);
        joined.set(r.value, held.length);
        if (joined.length > HOLD) {
          c.enqueue(joined.slice(0, joined.length - HOLD));
          held = joined.slice(joined.length - HOLD);
          return;
        }
        held = joined;
      }
    },
    async cancel() {
      await errReader.cancel().catch(() => {});
      finishErr();
    },
  }, OUTPUT_BUFFER);

  let finishOut!: () => void;
  const outDone = new Promise<void>((r) => finishOut = r);
  const outReader = wait.stdout!.getReader();
  const out = new ReadableStream<Uint8Array>({
    async pull(c) {
      const r = await outReader.read().catch(() => ({ done: true as const, value: undefined }));
      if (r.done) {
        c.close();
        finishOut();
      } else c.enqueue(r.value);
    },
    async cancel() {
      await outReader.cancel().catch(() => {});
      finishOut();
    },
  }, OUTPUT_BUFFER);

  const signalProc = async (signal: string) => {
    if (ended) return;
    const n = SIGNALS[signal];
    if (n === undefined) throw new UnsupportedError(`unknown signal ${JSON.stringify(signal)} (use a name such as SIGTERM or SIGKILL)`);
    const args = n === 9 ? machineArgv.procKill(m.vm, token) : machineArgv.procSignal(m.vm, token, n);
    try {
      await m.cli.capture(args);
    } catch (e) {
      if (!ended) throw e; // a process that ended meanwhile has nothing left to signal
    }
  };
  const onAbort = () => void signalProc("SIGKILL").catch(() => {});
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  if (opts.signal?.aborted) onAbort();

  const status: Promise<ProcessStatus> = Promise.all([wait.status, outDone, errDone]).then(async ([s]) => {
    ended = true;
    opts.signal?.removeEventListener("abort", onAbort);
    const durationMs = Math.round(performance.now() - started);
    if (s.code === null) {
      throw new TransportError(`mvmctl machine proc wait was killed by ${s.signal}; the guest's result is unknown`, {
        details: { argv: [m.cli.config.bin, ...waitArgs], signal: s.signal },
      });
    }
    if (s.code === 255 && cliLine) throw cliFailure([m.cli.config.bin, ...waitArgs], 255, cliLine);
    // as the local engine: a signal death reports 128 + its number, a timeout the SIGKILL that ended it
    let exitCode: number = s.code;
    let signal: string | null = null;
    let timedOut = false;
    if (cliLine === "timed out") {
      timedOut = true;
      exitCode = 137;
      signal = "SIGKILL";
    } else if (cliLine.startsWith("killed by signal ")) {
      signal = signalName(s.code - 128);
    }
    if (s.code !== 0 && !(await m.running().catch(() => false))) {
      throw new TransportError(`machine ${m.vm} is not running any more; the process's result and output may be incomplete`, {
        details: { vm: m.vm, exitCode: s.code },
      });
    }
    const auditId = m.record("process.exited", { argv0: argv[0], exitCode, signal, timedOut, durationMs });
    return { exitCode, signal, timedOut, oomKilled: false, durationMs, auditId };
  });
  status.catch(() => {});

  // stdin: `proc stdin` is spawned on the first write or close, so a caller who never feeds it pays nothing
  let feeder: { child: ChildProcess; writer: WritableStreamDefaultWriter<Uint8Array>; err: Promise<string> } | undefined;
  const open = async () => {
    if (!feeder) {
      const child = await m.cli.spawn(machineArgv.procStdin(m.vm, token), { stdin: true, stdout: false });
      feeder = { child, writer: child.stdin!.getWriter(), err: readTail(child.stderr!, 64 * 1024) };
    }
    return feeder;
  };
  const stdin = new WritableStream<Uint8Array>({
    async write(chunk) {
      const f = await open();
      await f.writer.write(chunk);
    },
    async close() {
      if (ended && !feeder) return;
      const f = await open();
      await f.writer.close().catch(() => {});
      const [st, err] = await Promise.all([f.child.status, f.err]);
      if (st.code !== 0 && !ended) throw cliFailure([m.cli.config.bin, ...machineArgv.procStdin(m.vm, token)], st.code, err, st.signal);
    },
    async abort() {
      if (feeder) {
        await feeder.writer.abort().catch(() => {});
        feeder.child.kill("SIGKILL");
      }
    },
  });

  return { stdin, stdout: out, stderr, status, kill: (signal = "SIGTERM") => signalProc(signal) };
}
