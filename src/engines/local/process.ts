/**
 * Guest processes: `commands.start` on a runner. The exit status is what the SDK's processes saw (the
 * wait status the runner, which guest code cannot trace, took from the kernel; the cgroup's OOM
 * counter), never what guest code said. A command's process tree ends with it: whatever it leaves
 * behind is killed when it exits (its runner is then let go and its group reaped).
 *
 * @example
 * ```ts
 * import { startProcess } from "./process.ts";
 * // const p = await startProcess(core, ["echo", "hi"], { env: {} });
 * console.log(typeof startProcess);
 * ```
 * @module
 */
import { NotADirectoryError, NotFoundError, PermissionDeniedError, TransportError } from "../../errors.ts";
import { signalExitCode } from "../../signals.ts";
import type { ProcessStatus } from "../../types.ts";
import type { EngineProcess, EngineStartOptions } from "../contract.ts";
import { agent } from "./agent.ts";
import { PeekReader, type SandboxCore } from "./core.ts";
import { absolute } from "./files.ts";
import { guestOutput } from "./output.ts";
import { DEFAULT_PTY_SIZE, PTY_VIA, ptyInput, ptyStart } from "./pty.ts";
import { GUEST_PATH, type RunnerJob } from "./runners.ts";

/** Environment every guest process starts with, before the sandbox's and the command's own. */
function baseEnv(): Record<string, string> {
  return { PATH: GUEST_PATH, HOME: "/root", LANG: "C.UTF-8", TERM: "dumb" };
}

/** How long the runner may take to report how the start went, past its acknowledgement. */
const START_REPORT_MS = 5_000;

/**
 * Reads the job's report of the start (see `job.ts`): X it execs the program now; otherwise the
 * job is over and the failure thrown, typed: N a program that is not there (NOT_FOUND naming it), C
 * a cwd it could not enter (classified by the file agent, naming the field and path). The report
 * comes before anything of the guest runs in this process, on a pipe only the SDK's processes hold,
 * so guest output cannot forge either failure.
 */
async function startReport(core: SandboxCore, j: RunnerJob, program: string, path: string, cwd: string): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const said = await Promise.race([
    j.report(),
    new Promise<"late">((res) => timer = setTimeout(() => res("late"), START_REPORT_MS)),
  ]).finally(() => clearTimeout(timer));
  if (said === 0x58 /* X */) return;
  await j.abandon();
  j.stdin?.abort().catch(() => {});
  j.stdout.cancel().catch(() => {});
  j.stderr.cancel().catch(() => {});
  await j.runner.child.status.catch(() => {});
  j.finish(true);
  const dead = core.deathError("start a process");
  if (dead) throw dead;
  if (said === 0x4e /* N */) {
    const where = program.includes("/") ? "there is no such file in the sandbox" : `no such command on the sandbox's PATH (${path})`;
    throw new NotFoundError(
      `program ${JSON.stringify(program)} not found: ${where}; check its name, install it in the image, or give its full path`,
      { details: { field: "argv", program } },
    );
  }
  if (said === 0x43 /* C */) {
    let e: unknown = null;
    await agent(core, "cwdcheck", [cwd], cwd).catch((x) => e = x);
    if (e instanceof NotFoundError || e instanceof NotADirectoryError) {
      const what = e instanceof NotFoundError ? "there is no such directory in the sandbox" : "it (or a part of it) is not a directory";
      throw new (e.constructor as typeof NotFoundError)(
        `cwd ${JSON.stringify(cwd)}: ${what}; pass an existing directory (files.mkdir makes one)`,
        { details: { field: "cwd", path: cwd }, cause: e },
      );
    }
    if (e) throw e;
    throw new PermissionDeniedError(
      `cwd ${JSON.stringify(cwd)}: the sandbox's user cannot enter this directory; pass another, or chmod it`,
      {
        details: { field: "cwd", path: cwd },
      },
    );
  }
  throw new TransportError(`the SDK's runner ${said === "late" ? "was stopped" : "died"} before it started ${JSON.stringify(program)}`, {
    details: { program },
  });
}

/** Starts a guest process. @example `await startProcess(core, ["ls"], { env: {} })` */
export async function startProcess(core: SandboxCore, argv: string[], opts: EngineStartOptions): Promise<EngineProcess> {
  const cwd = opts.cwd === undefined ? "/" : absolute(opts.cwd);
  const started = performance.now();
  const pty = opts.pty ? { ...DEFAULT_PTY_SIZE, ...opts.pty } : undefined;
  // a terminal says what it is, unless the caller says otherwise
  const env: Record<string, string> = {
    ...baseEnv(),
    ...(pty ? { TERM: "xterm-256color" } : {}),
    ...core.meta.env,
    ...core.dir.readExposed(),
    ...opts.env,
  };
  const j = await core.exec({ kind: "command", argv, env, cwd, ...(pty ? { via: [...PTY_VIA] } : {}) }, true, "start a process");
  await startReport(core, j, argv[0] ?? "", env.PATH ?? "", cwd);
  const stdout = new PeekReader(j.stdout);
  if (pty) {
    try {
      // without cgroups a kill reaches only the helper's session: the helper passes it on
      const kill = () => void j.kill("SIGKILL");
      await ptyStart({ stdin: j.stdin!, out: stdout, stderr: j.stderr, kill }, argv, env, pty, j.runner.cg === null);
    } catch (e) {
      await j.abandon();
      stdout.cancel().catch(() => {});
      j.stderr.cancel().catch(() => {});
      await j.runner.child.status.catch(() => {});
      j.finish(true);
      throw core.deathError("start a process") ?? e;
    }
  }
  const input = pty ? ptyInput(j.stdin!) : undefined;
  const pid = j.pid;
  core.dir.appendEvent("process.started", { pid, argv0: argv[0], argc: argv.length, cwd });
  let timedOut = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  if (opts.timeoutSeconds !== undefined) {
    timer = setTimeout(() => {
      timedOut = true;
      j.kill("SIGKILL");
    }, opts.timeoutSeconds * 1000);
  }
  const onAbort = () => j.kill("SIGKILL");
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  if (opts.signal?.aborted) onAbort();

  // A command's process tree ends with it: what it left behind makes its runner let go and its group
  // reaped, off the critical path, unless the streams are still held open by something it left, or
  // the OOM count is needed. Without cgroups nothing can find what it left behind, so its streams are
  // let go instead.
  let reaped: Promise<number> | undefined;
  const reap = () => reaped ??= j.runner.cg ? j.finish(true) : Promise.all([out.release(), err.release()]).then(() => j.finish(true));
  let streamsDone = false;
  const exited = j.status().then((s) => {
    // once the tree is gone, what is left in the pipes (bounded: a pipe's capacity) is taken into the
    // streams whether or not anyone reads them, so an unread stream never holds up `status`
    setTimeout(() => streamsDone || reap().finally(() => (out.drain(), err.drain())), 25);
    return s;
  });
  const failure = () => core.deathError("read this stream");
  const out = guestOutput(stdout, exited, failure);
  const err = guestOutput(j.stderr.getReader(), exited, failure);
  const stdin = j.stdin!;
  const status: Promise<ProcessStatus> = Promise.all([exited, out.done, err.done]).then(async ([s]) => {
    streamsDone = true;
    // the process is gone: its stdin pipe is let go now, not when a collector gets to it
    if (input) input.close();
    else if (!stdin.locked) stdin.abort().catch(() => {});
    clearTimeout(timer);
    opts.signal?.removeEventListener("abort", onAbort);
    const killed = s.signal === "SIGKILL" || s.code === 137;
    const oom = killed ? await j.finish(true) : (j.finish(), 0);
    const dead = core.deathError("wait for this process");
    if (dead) throw dead;
    let signal = s.signal;
    const oomKilled = killed && !timedOut && oom > core.dir.readNumber("oom.seen");
    if (oomKilled) core.dir.write("oom.seen", String(oom));
    // a shell in between reports 128+n
    if (signal === null && s.code === 137 && (timedOut || oomKilled)) signal = "SIGKILL";
    // an ended process always has a code: 128 + the signal's number for a signal death (as shells do)
    const exitCode = signal === null ? s.code ?? 128 : signalExitCode(signal);
    const durationMs = Math.round(performance.now() - started);
    const auditId = core.dir.appendEvent("process.exited", {
      pid,
      argv0: argv[0],
      exitCode,
      signal,
      timedOut,
      oomKilled,
      durationMs,
    });
    return { exitCode, signal, timedOut, oomKilled, durationMs, auditId };
  });
  status.catch(() => {});
  return {
    stdin: input?.stdin ?? stdin,
    stdout: out.stream,
    stderr: err.stream,
    status,
    kill: (signal = "SIGTERM") => j.kill(signal),
    ...(input ? { resize: input.resize } : {}),
  };
}
