/**
 * Guest processes: `commands.start` on a runner. The exit status is what the host saw (nsenter's
 * wait status relayed to the host, the cgroup's OOM counter), never what a process inside said. A
 * command's process tree ends with it: whatever it leaves behind is killed when it exits.
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
import type { SandboxCore } from "./core.ts";
import { absolute } from "./files.ts";
import { guestOutput } from "./output.ts";
import { DEFAULT_PTY_SIZE, PTY_VIA, ptyInput, ptyStart } from "./pty.ts";
import { GUEST_PATH, type Runner } from "./runners.ts";

/** Environment every guest process starts with, before the sandbox's and the command's own. */
function baseEnv(): Record<string, string> {
  return { PATH: GUEST_PATH, HOME: "/root", LANG: "C.UTF-8", TERM: "dumb" };
}

/** How long the runner may take to report how the start went, past its acknowledgement. */
const START_REPORT_MS = 5_000;

/**
 * Reads the runner's report of the start (see `job.ts`): X it execs the program now; otherwise the
 * runner is ended and the failure thrown, typed: N a program that is not there (NOT_FOUND naming
 * it), C a cwd it could not enter (classified by the file agent, naming the field and path). The
 * report comes before anything of the guest runs in this process, on a pipe only the runner holds,
 * so guest output cannot forge either failure.
 */
async function startReport(core: SandboxCore, r: Runner, program: string, path: string, cwd: string): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const said = await Promise.race([
    r.out.byte().catch(() => null),
    new Promise<"late">((res) => timer = setTimeout(() => res("late"), START_REPORT_MS)),
  ]).finally(() => clearTimeout(timer));
  if (said === 0x58 /* X */) return;
  await core.killTree(r, "SIGKILL");
  r.child.kill("SIGKILL");
  r.out.cancel().catch(() => {});
  r.child.stderr?.cancel().catch(() => {});
  await r.child.status.catch(() => {});
  core.reap(r.cg);
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
  const r = await core.exec({ kind: "command", argv, env, cwd, ...(pty ? { via: [...PTY_VIA] } : {}) }, true, "start a process");
  await startReport(core, r, argv[0] ?? "", env.PATH ?? "", cwd);
  if (pty) {
    try {
      // without cgroups a kill reaches only the helper's session: the helper passes it on
      await ptyStart(r, argv, env, pty, r.cg === null);
    } catch (e) {
      await core.killTree(r, "SIGKILL");
      r.child.kill("SIGKILL");
      await r.child.status.catch(() => {});
      core.reap(r.cg);
      throw core.deathError("start a process") ?? e;
    }
  }
  const input = pty ? ptyInput(r.child.stdin!) : undefined;
  const { child, cg } = r;
  r.child.ref();
  core.dir.appendEvent("process.started", { pid: child.pid, argv0: argv[0], argc: argv.length, cwd });
  let timedOut = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  if (opts.timeoutSeconds !== undefined) {
    timer = setTimeout(() => {
      timedOut = true;
      core.killTree(r, "SIGKILL");
    }, opts.timeoutSeconds * 1000);
  }
  const onAbort = () => core.killTree(r, "SIGKILL");
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  if (opts.signal?.aborted) onAbort();

  // A command's process tree ends with it. Its group is reaped off the critical path, unless the
  // streams are still held open by something it left behind, or the OOM count is needed.
  // Without cgroups nothing can find what it left behind, so its streams are let go instead.
  let reaped: Promise<number> | undefined;
  const reap = () => reaped ??= cg ? core.reap(cg) : Promise.all([out.release(), err.release()]).then(() => 0);
  let streamsDone = false;
  const exited = child.status.then((s) => {
    // once the tree is gone, what is left in the pipes (bounded: a pipe's capacity) is taken into the
    // streams whether or not anyone reads them, so an unread stream never holds up `status`
    setTimeout(() => streamsDone || reap().finally(() => (out.drain(), err.drain())), 25);
    return s;
  });
  const failure = () => core.deathError("read this stream");
  const out = guestOutput(r.out, exited, failure);
  const err = guestOutput(child.stderr!.getReader(), exited, failure);
  const status: Promise<ProcessStatus> = Promise.all([exited, out.done, err.done]).then(async ([s]) => {
    streamsDone = true;
    // the process is gone: its stdin pipe is let go now, not when a collector gets to it
    if (input) input.close();
    else if (!child.stdin!.locked) child.stdin!.abort().catch(() => {});
    clearTimeout(timer);
    opts.signal?.removeEventListener("abort", onAbort);
    const killed = s.signal === "SIGKILL" || s.code === 137;
    const oom = killed ? await reap() : (reap(), 0);
    const dead = core.deathError("wait for this process");
    if (dead) throw dead;
    let signal = s.signal;
    const oomKilled = killed && !timedOut && oom > core.dir.readNumber("oom.seen");
    if (oomKilled) core.dir.write("oom.seen", String(oom));
    // nsenter reports a child killed by a signal by dying of it; a shell in between reports 128+n
    if (signal === null && s.code === 137 && (timedOut || oomKilled)) signal = "SIGKILL";
    // an ended process always has a code: 128 + the signal's number for a signal death (as shells do)
    const exitCode = signal === null ? s.code ?? 128 : signalExitCode(signal);
    const durationMs = Math.round(performance.now() - started);
    const auditId = core.dir.appendEvent("process.exited", {
      pid: child.pid,
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
    stdin: input?.stdin ?? child.stdin!,
    stdout: out.stream,
    stderr: err.stream,
    status,
    kill: (signal = "SIGTERM") => core.killTree(r, signal),
    ...(input ? { resize: input.resize } : {}),
  };
}
