/**
 * `Sandbox`, its `commands` and `files`, and process handles: the public
 * surface. Everything here is engine-neutral; engines do the work.
 *
 * @example A command and a file
 * ```ts
 * import assert from "node:assert/strict";
 * import { Sandbox } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * await sb.files.write("/app/greeting.txt", "hi");
 * const r = await sb.commands.run(["cat", "/app/greeting.txt"]);
 * assert.equal(r.stdout, "hi");
 * ```
 * @module
 */
import { CommandExitError, ConflictError, invalid, NotFoundError, UnsupportedError } from "./errors.ts";
import type { Engine, EngineProcess, EngineSandbox, WrittenFile } from "./engines/contract.ts";
import { getEngine } from "./engines/mod.ts";
import { withHostPermissions } from "./runtime/mod.ts";
import { normalizeCreate, resolveEngine, specEnvBytes } from "./spec.ts";
import { collectBytes, collectText, toStream } from "./streams.ts";
import type {
  Capabilities,
  CommandOptions,
  CommandResult,
  CreateOptions,
  EngineName,
  FileInfo,
  LogEvent,
  ProcessStatus,
  SandboxInfo,
  SandboxState,
} from "./types.ts";
import { checkArgEnvBudget, checkArgv, checkEnv, checkMovablePath, checkPath, checkRange, checkSandboxId } from "./validate.ts";

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
      let r: ReadableStreamReadResult<Uint8Array>;
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
  readonly #feed?: StdinFeed;
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
  /** Kills the process tree if it still runs. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.#feed?.stop();
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
  /** Starts a process and returns its handle with streams. @example `const p = await sb.commands.start(["sleep", "10"])` */
  async start(argv: string[], options: CommandOptions = {}): Promise<SandboxProcess> {
    const args = checkArgv(argv);
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
    if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw invalid("signal", "must be an AbortSignal");
    const stdinData = options.stdin === undefined ? undefined : toStream(options.stdin, "stdin");
    const p = await this.#sb._engine().start(args, { cwd: options.cwd, env, timeoutSeconds, signal: options.signal });
    return new SandboxProcess(p, stdinData ? new StdinFeed(stdinData, p) : undefined);
  }
  /**
   * Runs a process to its end and captures its output. With `check: true`, a
   * non-zero exit throws {@linkcode CommandExitError}.
   *
   * @example `const { stdout, exitCode } = await sb.commands.run(["ls", "/"])`
   */
  async run(argv: string[], options: CommandOptions = {}): Promise<CommandResult> {
    if (!this.#sb.capabilities().commands) {
      throw new UnsupportedError(
        `commands.run needs the command's output, which the ${this.#sb.engine} engine cannot give${
          this.#sb.engine === "record" ? " (record mode never executes; use commands.start to record, or run in live mode)" : ""
        }`,
      );
    }
    const p = await this.start(argv, options);
    if (options.stdin === undefined) p.stdin.close().catch(() => {});
    const r = await p.output();
    if (options.check && (r.exitCode !== 0 || r.signal !== null)) {
      const how = r.timedOut ? "timed out" : r.signal ? `was killed by ${r.signal}` : `exited with code ${r.exitCode}`;
      throw new CommandExitError(`command ${JSON.stringify(argv[0])} ${how}${r.oomKilled ? " (out of memory)" : ""}`, r);
    }
    return r;
  }
}

/**
 * Options of `files.write`.
 *
 * @example A private file in a new folder
 * ```ts
 * import assert from "node:assert/strict";
 * import { Sandbox, type WriteOptions } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * const options: WriteOptions = { mode: 0o600, createParents: true };
 * const w = await sb.files.write("/app/keys/id", "secret-ish", options);
 * assert.equal(w.mode, 0o600);
 * ```
 */
export interface WriteOptions {
  /** File mode, default 0o644. */
  mode?: number;
  /** Create missing parent directories (default true). */
  createParents?: boolean;
}

/**
 * Files inside the sandbox. Every operation runs inside the sandbox's own
 * view, so no path can reach the host. Relative paths resolve against the
 * sandbox's working directory (`/`).
 *
 * @example Writing, reading and listing
 * ```ts
 * import assert from "node:assert/strict";
 * import { type Files, Sandbox } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * const files: Files = sb.files;
 * await files.write("/app/main.py", "print('hi')");
 * assert.equal(await files.readText("/app/main.py"), "print('hi')");
 * assert.deepEqual((await files.list("/app")).map((f) => f.name), ["main.py"]);
 * assert.equal(await files.exists("/app/missing.py"), false);
 * ```
 */
export class Files {
  readonly #sb: Sandbox;
  /** @internal Made by {@linkcode Sandbox}; callers reach it as `sb.files`. */
  constructor(sb: Sandbox) {
    this.#sb = sb;
  }
  /** Reads a whole file. @example `const bytes = await sb.files.read("/etc/hostname")` */
  async read(path: string): Promise<Uint8Array> {
    return await collectBytes(await this.readStream(path));
  }
  /** Reads a whole file as UTF-8. @example `await sb.files.readText("/app/out.txt")` */
  async readText(path: string): Promise<string> {
    return new TextDecoder().decode(await this.read(path));
  }
  /** Streams a file, optionally a byte range. @example `const s = await sb.files.readStream("/big", { offset: 0, length: 1024 })` */
  async readStream(path: string, range: { offset?: number; length?: number } = {}): Promise<ReadableStream<Uint8Array>> {
    checkPath(path);
    if (range.offset !== undefined && (!Number.isSafeInteger(range.offset) || range.offset < 0)) {
      throw invalid("offset", "must be a whole number ≥ 0");
    }
    if (range.length !== undefined && (!Number.isSafeInteger(range.length) || range.length < 0)) {
      throw invalid("length", "must be a whole number ≥ 0");
    }
    return await this.#sb._engine().files.readStream(path, range);
  }
  /**
   * Writes a file atomically (a reader sees the old or the new file, never half
   * of one). `data` may be a stream of any size.
   *
   * @example `await sb.files.write("/app/data.bin", stream, { mode: 0o600 })`
   */
  async write(path: string, data: string | Uint8Array | ReadableStream<Uint8Array>, options: WriteOptions = {}): Promise<WrittenFile> {
    checkPath(path);
    const mode = options.mode ?? 0o644;
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) throw invalid("mode", "must be a file mode between 0 and 0o7777");
    return await this.#sb._engine().files.write(path, toStream(data), { mode, createParents: options.createParents ?? true });
  }
  /** Lists a directory. @example `const entries = await sb.files.list("/app")` */
  async list(path: string): Promise<FileInfo[]> {
    return await this.#sb._engine().files.list(checkPath(path));
  }
  /** Metadata of a path (symlinks are not followed). @example `(await sb.files.stat("/app")).type // "dir"` */
  async stat(path: string): Promise<FileInfo> {
    return await this.#sb._engine().files.stat(checkPath(path));
  }
  /** Whether a path exists. @example `await sb.files.exists("/app/main.py")` */
  async exists(path: string): Promise<boolean> {
    try {
      await this.stat(path);
      return true;
    } catch (e) {
      if (e instanceof NotFoundError) return false;
      throw e;
    }
  }
  /** Creates a directory; returns the audit id. @example `await sb.files.mkdir("/app/a/b", { parents: true })` */
  async mkdir(path: string, options: { parents?: boolean; mode?: number } = {}): Promise<string> {
    const mode = options.mode ?? 0o755;
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) throw invalid("mode", "must be a mode between 0 and 0o7777");
    return await this.#sb._engine().files.mkdir(checkPath(path), { parents: options.parents ?? false, mode });
  }
  /** Removes a file or (with `recursive`) a tree; returns the audit id. @example `await sb.files.remove("/app", { recursive: true })` */
  async remove(path: string, options: { recursive?: boolean } = {}): Promise<string> {
    return await this.#sb._engine().files.remove(checkMovablePath(path, "path", "removed"), { recursive: options.recursive ?? false });
  }
  /**
   * Unpacks a tar stream into `dir` (made if missing) inside the sandbox: a
   * whole project in one stream. Extraction runs in the jail, so entries such
   * as `../x` or absolute links can only land in the sandbox's own view.
   *
   * @example `await sb.files.writeTar("/app", (await Deno.open("proj.tar")).readable)`
   */
  async writeTar(dir: string, tar: ReadableStream<Uint8Array>): Promise<string> {
    return await this.#sb._engine().files.writeTar(checkPath(dir, "dir"), toStream(tar, "tar"));
  }
  /** Packs `dir` into a tar stream (paths relative to it). @example `await (await sb.files.readTar("/app")).pipeTo(file.writable)` */
  async readTar(dir: string): Promise<ReadableStream<Uint8Array>> {
    return await this.#sb._engine().files.readTar(checkPath(dir, "dir"));
  }
  /** Renames a path; returns the audit id. @example `await sb.files.rename("/a", "/b")` */
  async rename(from: string, to: string): Promise<string> {
    return await this.#sb._engine().files.rename(checkMovablePath(from, "from", "renamed"), checkMovablePath(to, "to", "replaced"));
  }
}

/**
 * An isolated sandbox. Create one with {@linkcode Sandbox.create}; `await using`
 * destroys it (processes, mounts, cgroups, state) unless it was detached.
 *
 * @example Create, use, and destroy with `await using`
 * ```ts
 * import assert from "node:assert/strict";
 * import { Sandbox } from "@mvm/sdk";
 *
 * let id: string;
 * {
 *   await using sb = await Sandbox.create({ memoryMb: 512, ttl: "10m", tags: { example: "sandbox" } });
 *   id = sb.id;
 *   await sb.files.write("/app/main.py", "print('hello from mvm')");
 *   const r = await sb.commands.run(["python3", "/app/main.py"], { timeoutSeconds: 30 });
 *   assert.equal(r.stdout, "hello from mvm\n");
 *   assert.equal(sb.state, "running");
 * }
 * const left = await Sandbox.list({ tags: { example: "sandbox" } });
 * assert.equal(left.some((s) => s.id === id), false);
 * ```
 */
export class Sandbox implements AsyncDisposable {
  /** Runs processes. */
  readonly commands: Commands;
  /** Exchanges files. */
  readonly files: Files;
  readonly #inner: EngineSandbox;
  readonly #engine: EngineName;
  readonly #caps: Capabilities;
  #state: SandboxState = "running";
  #detached: boolean;
  #released = false;
  /** What the sandbox's own environment takes of each command's budget (0 when this handle did not create it). */
  #envBytes = 0;

  private constructor(inner: EngineSandbox, engine: Engine, detached: boolean) {
    this.#inner = inner;
    this.#engine = engine.name;
    this.#caps = inner.capabilities?.() ?? engine.capabilities();
    this.#detached = detached;
    this.commands = new Commands(this);
    this.files = new Files(this);
  }

  /**
   * Creates a sandbox: `create()`, `create("python-3.12", opts)` or `create(opts)`.
   * With `MVM_SDK_MODE=record` it records instead of executing.
   *
   * @example `await using sb = await Sandbox.create({ memoryMb: 512, ttl: "10m" })`
   */
  static async create(templateOrOptions?: string | CreateOptions, options?: CreateOptions): Promise<Sandbox> {
    const { spec, engine } = normalizeCreate(templateOrOptions, options);
    const name = resolveEngine(engine);
    const e: Engine = await getEngine(name);
    const sb = new Sandbox(await withHostPermissions(() => e.create(spec)), e, false);
    sb.#envBytes = specEnvBytes(spec);
    return sb;
  }

  /**
   * Connects to a sandbox by id (e.g. one detached by another process).
   * Disposing a connected sandbox only disconnects it.
   *
   * @example `const sb = await Sandbox.connect(id)`
   */
  static async connect(id: string, options: { engine?: EngineName } = {}): Promise<Sandbox> {
    checkSandboxId(id);
    const name = resolveEngine(options.engine);
    const e = await getEngine(name);
    const sb = new Sandbox(await withHostPermissions(() => e.connect(id)), e, true);
    await sb.info();
    return sb;
  }

  /** Lists live sandboxes, optionally those carrying all the given tags. @example `await Sandbox.list({ tags: { team: "x" } })` */
  static async list(options: { tags?: Record<string, string>; engine?: EngineName } = {}): Promise<SandboxInfo[]> {
    const e = await getEngine(resolveEngine(options.engine));
    return await withHostPermissions(() => e.list({ tags: options.tags }));
  }

  /** The sandbox id. */
  get id(): string {
    return this.#inner.id;
  }
  /** The last known state; {@linkcode info} asks the engine. */
  get state(): SandboxState {
    return this.#state;
  }
  /** The engine running this sandbox. */
  get engine(): EngineName {
    return this.#engine;
  }
  /** Whether disposing this object leaves the sandbox running. */
  get detached(): boolean {
    return this.#detached;
  }

  /** Fresh metadata and state from the engine. @example `(await sb.info()).expiresAt` */
  async info(): Promise<SandboxInfo> {
    const i = await this.#inner.info();
    this.#state = i.state;
    return i;
  }

  /** Guest and supervisor events, JSON-serialisable; `follow` keeps the stream open. @example `for await (const ev of sb.logs()) console.log(ev.type)` */
  logs(options: { follow?: boolean } = {}): ReadableStream<LogEvent> {
    return this.#inner.logs({ follow: options.follow ?? false });
  }

  /** Stops every process; files stay until `destroy`. Returns the audit id. @example `await sb.stop()` */
  async stop(): Promise<string> {
    const id = await this.#inner.stop();
    this.#state = "stopped";
    return id;
  }

  /**
   * Deletes the sandbox and all its state. Idempotent: it always asks the
   * engine, even when `state` already says `destroyed` (a TTL teardown may still
   * be under way, or the state may be stale), and a sandbox that is already
   * gone counts as destroyed. Returns the audit id. @example `await sb.destroy()`
   */
  async destroy(): Promise<string> {
    let id = "";
    try {
      id = await this.#inner.destroy();
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
    }
    this.#state = "destroyed";
    return id;
  }

  /** Keeps the sandbox alive after this process exits, until its TTL; returns its id for {@linkcode Sandbox.connect}. @example `const id = await sb.detach()` */
  async detach(): Promise<string> {
    await this.#inner.detach();
    this.#detached = true;
    return this.id;
  }

  /** Lets go of this handle without changing the sandbox (detached or connected only). @example `await sb.disconnect()` */
  async disconnect(): Promise<void> {
    if (!this.#detached) throw new ConflictError("disconnect is for detached or connected sandboxes; call detach() first or destroy()");
    this.#released = true;
    await this.#inner.disconnect();
  }

  /** What this sandbox's engine can do. @example `sb.capabilities().snapshot` */
  capabilities(): Capabilities {
    return structuredClone(this.#caps);
  }

  /** @internal What the sandbox's own environment takes of each command's argv-and-environment budget, when known. */
  _envBytes(): number {
    return this.#envBytes;
  }

  /** @internal The engine sandbox, for Commands and Files. */
  _engine(): EngineSandbox {
    if (this.#state === "destroyed") throw new NotFoundError(`sandbox ${this.id} was destroyed`, { details: { id: this.id } });
    if (this.#released) throw new ConflictError(`sandbox ${this.id} was disconnected from this handle; Sandbox.connect(id) again`);
    return this.#inner;
  }

  /** Destroys a sandbox this process owns; a detached or connected one is only disconnected. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#detached) {
      if (!this.#released) await this.disconnect();
      return;
    }
    await this.destroy();
  }
}
