/**
 * Guest processes from the caller's side: `Commands` (`sb.commands`), the process handle
 * `SandboxProcess` with its Web Streams, and how a `stdin` source is fed.
 *
 * @example Streaming a process
 * ```ts
 * import assert from "node:assert/strict";
 * import { Sandbox } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * const p = await sb.commands.start(["seq", "2"]);
 * assert.equal((await p.output()).stdout, "1\n2\n");
 * ```
 * @module
 */
import { CommandExitError, commandFailureMessage, CommandTimeoutError, invalid, UnsupportedError } from "./errors.ts";
import type { EngineProcess } from "./engines/contract.ts";
import { collectText, toStream } from "./streams.ts";
import type { CommandInfo, CommandOptions, CommandResult, ProcessStatus } from "./types.ts";
import { checkArgEnvBudget, checkArgv, checkEnv, checkPath, checkRange, checkSignal } from "./validate.ts";
import type { Sandbox } from "./sandbox.ts";

/**
 * The argv of a command given as a string with `shell: true` (`/bin/sh -c`
 * and the string); an array passes as it is. A string without `shell: true`
 * is refused rather than split or handed to a shell behind the caller's back.
 */
function shellArgv(argv: unknown, shell: unknown): unknown {
  if (shell !== undefined && typeof shell !== "boolean") throw invalid("shell", "must be true or false");
  if (typeof argv === "string") {
    if (shell !== true) {
      throw invalid(
        "argv",
        `is a string (${JSON.stringify(argv.slice(0, 60))}); pass an array of arguments such as ["ls", "-l"], ` +
          `or { shell: true } to run it as a shell command line with /bin/sh -c`,
      );
    }
    return ["/bin/sh", "-c", argv];
  }
  if (shell === true) {
    throw invalid("shell", 'takes one command line as a string, e.g. run("ls -l | wc -l", { shell: true }); got an array');
  }
  return argv;
}

/** The `pty`, `cols` and `rows` options, checked: the terminal's size, or undefined without `pty`. */
function ptyOption(o: CommandOptions): { cols: number; rows: number } | undefined {
  if (o.pty !== undefined && typeof o.pty !== "boolean") throw invalid("pty", "must be true or false");
  if (!o.pty) {
    if (o.cols !== undefined || o.rows !== undefined) throw invalid(o.cols !== undefined ? "cols" : "rows", "needs pty: true");
    return undefined;
  }
  if (o.detached) throw new UnsupportedError("a detached command cannot have a terminal (pty) yet; start it without one of them");
  return checkPtySize(o.cols ?? 80, o.rows ?? 24);
}

/** A terminal size: whole numbers from 1 to 65535 (a `winsize` field). */
function checkPtySize(cols: unknown, rows: unknown): { cols: number; rows: number } {
  for (const [name, v] of [["cols", cols], ["rows", rows]] as const) {
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > 65535) {
      throw invalid(name, `must be a whole number from 1 to 65535, got ${String(v)}`);
    }
  }
  return { cols: cols as number, rows: rows as number };
}

/** The longest `timeoutSeconds`: 2^31 - 1 ms, the most a timer can wait before it fires at once instead. */
export const MAX_TIMEOUT_SECONDS = 2147483;

/**
 * Copies a caller's `stdin` source into a process's stdin with backpressure.
 * When the source fails (or carries a chunk that is not bytes), the process is
 * killed while its stdin is still open, so it never takes a broken input for a
 * whole one, and the source's error is kept for the handle's `status`. When
 * the process stops reading (it exited, or closed its stdin), the source is
 * cancelled: that is no error.
 */
class StdinFeed {
  failed = false;
  error: unknown;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  constructor(source: ReadableStream<Uint8Array>, p: EngineProcess) {
    this.#reader = source.getReader();
    this.#run(p);
  }
  async #run(p: EngineProcess): Promise<void> {
    let writer: WritableStreamDefaultWriter<Uint8Array>;
    try {
      writer = p.stdin.getWriter();
    } catch {
      // the process's stdin is already taken or gone: there is nowhere to write
      return void this.#reader.cancel().catch(() => {});
    }
    for (;;) {
      let r: Awaited<ReturnType<ReadableStreamDefaultReader<Uint8Array>["read"]>>;
      try {
        r = await this.#reader.read();
      } catch (e) {
        this.failed = true;
        this.error = e instanceof Error ? e : invalid("stdin", `the stdin stream failed: ${String(e)}`);
        // stdin stays open until the process is gone (the kill is asked again while it is not), so
        // not even a kill that failed lets it see the end of its input
        const ended = p.status.then(() => true, () => true);
        for (let i = 0; i < 5; i++) {
          await p.kill("SIGKILL").catch(() => {});
          let timer: ReturnType<typeof setTimeout> | undefined;
          const gone = await Promise.race([ended, new Promise<false>((r) => timer = setTimeout(() => r(false), 1000))]);
          clearTimeout(timer);
          if (gone) break;
        }
        await writer.abort(this.error).catch(() => {});
        return;
      }
      if (r.done) return void await writer.close().catch(() => {});
      try {
        await writer.write(r.value);
      } catch {
        return void await this.#reader.cancel().catch(() => {});
      }
    }
  }
  /** Stops reading the source (the process ended, or its handle was disposed). */
  stop(): void {
    this.#reader.cancel().catch(() => {});
  }
}

/**
 * A running guest process. Its output streams have backpressure: a slow
 * reader slows the process. `status` resolves only after every byte was
 * delivered to `stdout` and `stderr`.
 *
 * @example Streaming through a process
 * ```ts
 * import assert from "node:assert/strict";
 * import { Sandbox, type SandboxProcess } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * await using p: SandboxProcess = await sb.commands.start(["tr", "a-z", "A-Z"]);
 * const w = p.stdin.getWriter();
 * await w.write(new TextEncoder().encode("hi"));
 * await w.close();
 * assert.equal(await new Response(p.stdout).text(), "HI");
 * assert.equal((await p.status).exitCode, 0);
 * ```
 */
export class SandboxProcess implements AsyncDisposable {
  readonly #p: EngineProcess;
  readonly #status?: Promise<ProcessStatus>;
  readonly #feed: StdinFeed | undefined;
  /** @internal `feed` copies the `stdin` option in; its failure rejects `status`. */
  constructor(p: EngineProcess, feed?: StdinFeed) {
    this.#p = p;
    this.#feed = feed;
    // without a feed, the engine's status is only asked for when the caller asks (an engine may make it on demand)
    if (feed) {
      this.#status = p.status.finally(() => feed.stop()).then((s) => {
        if (feed.failed) throw feed.error;
        return s;
      });
      // a caller who never looks at status must not get an unhandled rejection
      this.#status.catch(() => {});
    }
  }
  /** A detached command's id (for `commands.connect`); undefined for a command bound to this handle. */
  get id(): string | undefined {
    return this.#p.id;
  }
  /** Standard output. */
  get stdout(): ReadableStream<Uint8Array> {
    return this.#p.stdout;
  }
  /** Standard error. */
  get stderr(): ReadableStream<Uint8Array> {
    return this.#p.stderr;
  }
  /** Standard input; close it to send EOF. Locked when the `stdin` option was given (the SDK writes it). */
  get stdin(): WritableStream<Uint8Array> {
    return this.#p.stdin;
  }
  /**
   * How the process ended. When the `stdin` option was a stream and that
   * stream failed, or carried a chunk that is not bytes, the process was killed
   * before its stdin closed (so it never took a broken input for a whole one)
   * and `status` rejects with the stream's error — an `InvalidInputError`
   * naming the chunk for a bad chunk. `output()` and `commands.run` reject the
   * same way.
   */
  get status(): Promise<ProcessStatus> {
    return this.#status ?? this.#p.status;
  }
  /**
   * Changes the size of the process's terminal (started with `pty: true`): the program gets
   * SIGWINCH and `stty size` shows the new size. A process that has ended is left as it is. Without
   * a terminal it is `UnsupportedError`; a size outside 1..65535 is `InvalidInputError`.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { Sandbox } from "@mvm/sdk";
   *
   * await using sb = await Sandbox.create();
   * const p = await sb.commands.start(["sh", "-c", "read x; stty size"], { pty: true, cols: 80, rows: 24 });
   * await p.resize(120, 40);
   * const w = p.stdin.getWriter();
   * await w.write(new TextEncoder().encode("\r"));
   * assert.match(await new Response(p.stdout).text(), /40 120/);
   * ```
   */
  async resize(cols: number, rows: number): Promise<void> {
    if (!this.#p.resize) throw new UnsupportedError("resize needs a process started with { pty: true }; this one has no terminal");
    const s = checkPtySize(cols, rows);
    await this.#p.resize(s.cols, s.rows);
  }
  /** Signals the whole process tree (default SIGTERM). @example `await p.kill("SIGKILL")` */
  kill(signal = "SIGTERM"): Promise<void> {
    return this.#p.kill(signal);
  }
  /** Reads stdout and stderr to their ends and waits for the exit. @example `const r = await p.output()` */
  async output(): Promise<CommandResult> {
    // every part settles before an error is thrown, so no stream is left half-read
    const [stdout, stderr, status] = await Promise.allSettled([collectText(this.stdout), collectText(this.stderr), this.status]);
    if (status.status === "rejected") throw status.reason;
    if (stdout.status === "rejected") throw stdout.reason;
    if (stderr.status === "rejected") throw stderr.reason;
    return { ...status.value, stdout: stdout.value, stderr: stderr.value };
  }
  /** Kills the process tree if it still runs; a detached command is only let go of (`kill()` stops it). */
  async [Symbol.asyncDispose](): Promise<void> {
    this.#feed?.stop();
    if (this.#p.detached) {
      await Promise.allSettled([this.#p.stdout.cancel(), this.#p.stderr.cancel()]);
      return;
    }
    await this.#p.kill("SIGKILL").catch(() => {});
    await Promise.allSettled([this.#p.stdout.cancel(), this.#p.stderr.cancel()]);
    await this.#p.status.catch(() => {});
  }
}

/**
 * Runs processes in the sandbox: `run` to the end with the output as text,
 * `start` for a handle with streams. Reached as `sb.commands`.
 *
 * @example Running to the end, or streaming
 * ```ts
 * import assert from "node:assert/strict";
 * import { type Commands, Sandbox } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * const commands: Commands = sb.commands;
 * const r = await commands.run(["python3", "-c", "print(2+2)"], { timeoutSeconds: 30 });
 * assert.equal(r.stdout, "4\n");
 * const p = await commands.start(["seq", "3"]);
 * assert.equal((await p.output()).stdout, "1\n2\n3\n");
 * ```
 */
export class Commands {
  readonly #sb: Sandbox;
  /** @internal Made by {@linkcode Sandbox}; callers reach it as `sb.commands`. */
  constructor(sb: Sandbox) {
    this.#sb = sb;
  }
  /**
   * Starts a process and returns its handle with streams. `argv` is the
   * program and its arguments; a shell command line is one string with
   * `shell: true` (run by `/bin/sh -c`).
   *
   * @example `const p = await sb.commands.start(["sleep", "10"])`
   */
  start(argv: string[], options?: CommandOptions): Promise<SandboxProcess>;
  /** A shell command line, run by `/bin/sh -c`. @example `await sb.commands.start("sleep 1 && echo done", { shell: true })` */
  start(command: string, options: CommandOptions & { shell: true }): Promise<SandboxProcess>;
  async start(argv: string[] | string, options: CommandOptions = {}): Promise<SandboxProcess> {
    const args = checkArgv(shellArgv(argv, options.shell));
    const env = checkEnv(options.env, "env");
    checkArgEnvBudget(args, env, this.#sb._envBytes());
    const timeoutSeconds = checkRange(options.timeoutSeconds, "timeoutSeconds", {
      min: 0,
      minExclusive: true,
      max: MAX_TIMEOUT_SECONDS,
      unit: "seconds",
      why: "about 24.8 days, the longest a timer can wait",
    });
    if (options.cwd !== undefined) checkPath(options.cwd, "cwd");
    checkSignal(options.signal);
    const pty = ptyOption(options);
    const stdinData = options.stdin === undefined ? undefined : toStream(options.stdin, "stdin");
    if (options.resume) await this.#sb._resumeIfPaused();
    const engine = this.#sb._engine();
    if (options.detached && !engine.connectCommand) {
      throw new UnsupportedError(`the ${this.#sb.engine} engine has no detached commands; start it without detached`);
    }
    const p = await engine.start(args, {
      cwd: options.cwd,
      env,
      timeoutSeconds,
      signal: options.signal,
      detached: options.detached === true,
      ...(pty ? { pty } : {}),
    });
    return new SandboxProcess(p, stdinData ? new StdinFeed(stdinData, p) : undefined);
  }
  /**
   * The sandbox's detached commands (started with `detached: true`, from any process), running or
   * ended, oldest first.
   *
   * @example `for (const c of await sb.commands.list()) console.log(c.id, c.argv0, c.running)`
   */
  async list(): Promise<CommandInfo[]> {
    const engine = this.#sb._engine();
    if (!engine.commands) throw new UnsupportedError(`the ${this.#sb.engine} engine has no detached commands to list`);
    return await engine.commands();
  }
  /**
   * Re-attaches to a detached command by id, from any handle or process. Its output streams start
   * where this reader joins (`from: "now"`, the default) or at the oldest byte the sandbox still
   * keeps for it (`from: "start"`: everything, when no other reader went past it); its `status`
   * resolves when it ends; `kill()` signals it; `stdin` takes one writer per command. Disposing the
   * handle lets the command run.
   *
   * @example `const p = await sb.commands.connect(id); for await (const c of p.stdout) console.log(c)`
   */
  async connect(id: string, options: { from?: "now" | "start" } = {}): Promise<SandboxProcess> {
    if (typeof id !== "string") throw invalid("id", 'must be a command id string such as "cmd-0a1b2c3d4e5f"');
    const from = options.from ?? "now";
    if (from !== "now" && from !== "start") throw invalid("from", `must be "now" or "start", got ${JSON.stringify(from)}`);
    const engine = this.#sb._engine();
    if (!engine.connectCommand) throw new UnsupportedError(`the ${this.#sb.engine} engine has no detached commands to connect to`);
    return new SandboxProcess(await engine.connectCommand(id, from));
  }
  /**
   * Runs a process to its end and captures its output. With `check: true`, a
   * non-zero exit throws {@linkcode CommandExitError} (its message ends with
   * the tail of stderr) and a timeout {@linkcode CommandTimeoutError} (a
   * `TimeoutError`); both carry the result.
   *
   * @example `const { stdout, exitCode } = await sb.commands.run(["ls", "/"])`
   */
  run(argv: string[], options?: CommandOptions): Promise<CommandResult>;
  /** A shell command line, run by `/bin/sh -c`. @example `(await sb.commands.run("echo $HOME", { shell: true })).stdout // "/root\n"` */
  run(command: string, options: CommandOptions & { shell: true }): Promise<CommandResult>;
  async run(argv: string[] | string, options: CommandOptions = {}): Promise<CommandResult> {
    if (!this.#sb.capabilities().commands) {
      throw new UnsupportedError(
        `commands.run needs the command's output, which the ${this.#sb.engine} engine cannot give${
          this.#sb.engine === "record" ? " (record mode never executes; use commands.start to record, or run in live mode)" : ""
        }`,
      );
    }
    const args = checkArgv(shellArgv(argv, options.shell));
    const p = await this.start(args, { ...options, shell: false });
    if (options.stdin === undefined) p.stdin.close().catch(() => {});
    const r = await p.output();
    if (options.check && (r.exitCode !== 0 || r.signal !== null)) {
      if (r.timedOut) throw new CommandTimeoutError(commandFailureMessage(args, r), r);
      throw new CommandExitError(commandFailureMessage(args, r), r);
    }
    return r;
  }
}
