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
import type { AuditEntry } from "./audit.ts";
import { ConflictError, invalid, NotFoundError, TimeoutError, UnsupportedError } from "./errors.ts";
import { parseTtl } from "./ttl.ts";
import type { Engine, EngineSandbox } from "./engines/contract.ts";
import { getEngine } from "./engines/mod.ts";
import { withHostPermissions } from "./runtime/mod.ts";
import { normalizeCreate, resolveEngine, type SandboxSpec, specEnvBytes } from "./spec.ts";
import {
  DEFAULT_SNAPSHOT_RETENTION_SECONDS,
  type ForkInfo,
  type RestoreInfo,
  type SnapshotInfo,
  type SnapshotOptions,
} from "./snapshot.ts";
import type { Capabilities, CreateOptions, EngineName, LogEvent, SandboxInfo, SandboxState } from "./types.ts";
import { checkRange, checkSandboxId, checkSignal, checkStringMap, NAME_RE } from "./validate.ts";
import { Commands, MAX_TIMEOUT_SECONDS } from "./commands.ts";
import { Files } from "./files.ts";

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
    const opts = (typeof templateOrOptions === "string" ? options : templateOrOptions) ?? {};
    return await Sandbox.#createSpec(spec, engine, opts);
  }

  static async #createSpec(spec: SandboxSpec, engine: EngineName | undefined, opts: CreateOptions): Promise<Sandbox> {
    const signal = checkSignal(opts.signal);
    const timeoutSeconds = checkRange(opts.timeoutSeconds, "timeoutSeconds", {
      min: 0,
      minExclusive: true,
      max: MAX_TIMEOUT_SECONDS,
      unit: "seconds",
      why: "about 24.8 days, the longest a timer can wait",
    });
    signal?.throwIfAborted();
    const name = resolveEngine(engine);
    const e: Engine = await getEngine(name);
    const creating = withHostPermissions(() => e.create(spec));
    const sb = new Sandbox(await Sandbox.#bounded(creating, signal, timeoutSeconds), e, false);
    sb.#envBytes = specEnvBytes(spec);
    return sb;
  }

  /**
   * Waits for a create, unless `signal` aborts or `timeoutSeconds` pass first: then what the create
   * made is destroyed as soon as it is there, and only after that does the call reject.
   */
  static async #bounded(creating: Promise<EngineSandbox>, signal?: AbortSignal, timeoutSeconds?: number): Promise<EngineSandbox> {
    if (!signal && timeoutSeconds === undefined) return await creating;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let onAbort: (() => void) | undefined;
    const stopped = new Promise<never>((_, reject) => {
      onAbort = () => reject(signal?.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      if (timeoutSeconds !== undefined) {
        timer = setTimeout(
          () => reject(new TimeoutError(`Sandbox.create did not finish within ${timeoutSeconds} s; what it made was destroyed`)),
          timeoutSeconds * 1000,
        );
      }
    });
    try {
      return await Promise.race([creating, stopped]);
    } catch (e) {
      // whatever the create makes is destroyed before the caller hears of the abort
      await creating.then((inner) => inner.destroy(), () => {}).catch(() => {});
      throw e;
    } finally {
      clearTimeout(timer);
      if (onAbort) signal?.removeEventListener("abort", onAbort);
    }
  }

  /**
   * Connects to a sandbox by id (e.g. one detached by another process), or by
   * the name it was created with: `Sandbox.connect({ name: "web" })`. Names
   * are unique among live sandboxes. Disposing a connected sandbox only
   * disconnects it.
   *
   * @example `const sb = await Sandbox.connect(id)`
   */
  static async connect(target: string | { name: string }, options: { engine?: EngineName } = {}): Promise<Sandbox> {
    const e = await getEngine(resolveEngine(options.engine));
    let id: string;
    if (typeof target === "object" && target !== null && !Array.isArray(target)) {
      const name = target.name;
      if (typeof name !== "string" || !NAME_RE.test(name)) {
        throw invalid("name", "must be 1-64 characters of letters, digits, '.', '_' or '-'");
      }
      const found = await withHostPermissions(async () =>
        e.findByName ? await e.findByName(name) : (await e.list({})).find((s) => s.name === name)?.id ?? null
      );
      if (found === null) {
        throw new NotFoundError(`no live sandbox is named ${JSON.stringify(name)} (destroyed, expired, or never created here)`, {
          details: { name },
        });
      }
      id = found;
    } else {
      id = checkSandboxId(target);
    }
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

  /**
   * This sandbox's entries in the engine's signed audit chain, oldest first: one per operation that
   * changed or read its state, each `id` the `auditId` a call returned. The chain outlives the
   * sandbox, so this works after `destroy()` too. {@linkcode verifyAudit} checks the chain's
   * signatures and order.
   *
   * @example Results name their audit entries
   * ```ts
   * import assert from "node:assert/strict";
   * import { Sandbox } from "@mvm/sdk";
   *
   * const sb = await Sandbox.create();
   * const w = await sb.files.write("/app/a.txt", "a");
   * await sb.destroy();
   * const entries = await Array.fromAsync(sb.audit());
   * assert.equal(entries.find((e) => e.id === w.auditId)?.event, "files.write");
   * ```
   */
  audit(): ReadableStream<AuditEntry> {
    if (!this.#inner.audit) throw new UnsupportedError(`the ${this.#engine} engine keeps no audit chain`);
    return this.#inner.audit();
  }

  /**
   * Stops the sandbox: every process in it ends (a paused one too), its files stay. While stopped,
   * `files` keep working (the local engine serves them from a fresh jail with no guest process in
   * it) and commands throw `ConflictError` naming the state; {@linkcode start} brings it back. The
   * TTL keeps running. Returns the audit id.
   *
   * @example Stop, read, start
   * ```ts
   * import assert from "node:assert/strict";
   * import { Sandbox } from "@mvm/sdk";
   *
   * await using sb = await Sandbox.create();
   * await sb.files.write("/app/state.txt", "kept");
   * await sb.stop();
   * assert.equal(await sb.files.readText("/app/state.txt"), "kept");
   * await sb.start();
   * assert.equal((await sb.commands.run(["cat", "/app/state.txt"])).stdout, "kept");
   * ```
   */
  async stop(): Promise<string> {
    const id = await withHostPermissions(() => this.#inner.stop());
    this.#state = "stopped";
    return id;
  }

  /**
   * Starts a stopped sandbox again: `state` becomes `running` and commands run, with the files it
   * had (`/tmp`, a tmpfs, starts empty, as after a reboot). Starting a running sandbox changes
   * nothing. Returns the audit id.
   *
   * @example `await sb.start()`
   */
  async start(): Promise<string> {
    const inner = this._engine();
    if (!inner.startStopped) throw new UnsupportedError(`the ${this.#engine} engine cannot start a stopped sandbox again`);
    const id = await withHostPermissions(() => inner.startStopped!());
    this.#state = "running";
    return id;
  }

  /**
   * Pauses the sandbox: every process in it is frozen (the local engine uses the cgroup freezer) and
   * keeps its memory; `state` becomes `paused`. Commands and file operations on a paused sandbox
   * throw `ConflictError` naming the state, unless they are given `{ resume: true }`. The TTL keeps
   * running while paused: a paused sandbox is still destroyed when its lease ends (or its owner dies,
   * unless detached). Pausing a paused sandbox changes nothing. `{ toDisk: true }` (memory written
   * to disk, state `sleeping`) needs a checkpoint tool the local engine does not have: it throws
   * `UnsupportedError` with the reason, never a weaker pause. Returns the audit id.
   *
   * @example Freeze and thaw
   * ```ts
   * import assert from "node:assert/strict";
   * import { Sandbox } from "@mvm/sdk";
   *
   * await using sb = await Sandbox.create();
   * await sb.pause();
   * assert.equal(sb.state, "paused");
   * await sb.resume();
   * assert.equal((await sb.commands.run(["echo", "back"])).stdout, "back\n");
   * ```
   */
  async pause(options: { toDisk?: boolean } = {}): Promise<string> {
    const inner = this._engine();
    if (!inner.pause) throw new UnsupportedError(`the ${this.#engine} engine cannot pause sandboxes`);
    const id = await withHostPermissions(() => inner.pause!({ toDisk: options.toDisk === true }));
    this.#state = "paused";
    return id;
  }

  /**
   * Resumes a paused sandbox where it stopped; resuming a running one changes nothing. Any number
   * of pause/resume cycles work. Returns the audit id.
   *
   * @example `await sb.resume()`
   */
  async resume(): Promise<string> {
    const inner = this._engine();
    if (!inner.resume) throw new UnsupportedError(`the ${this.#engine} engine cannot pause or resume sandboxes`);
    const id = await withHostPermissions(() => inner.resume!());
    this.#state = "running";
    return id;
  }

  /**
   * Captures the sandbox's filesystem (its writable `/`; `/tmp`, a tmpfs, is not kept) into a sealed
   * snapshot, while every process of it is frozen (a paused sandbox stays paused). The content list
   * holds a SHA-256 per file and one root digest; the seal is HMAC-SHA256 under the host's key.
   * Retention is explicit: `retention` (seconds, `"7d"`, or `"forever"`), default 7 days, shown in
   * `expiresAt`. `class: "vm_full"` (memory too) needs a checkpoint tool: the local engine throws
   * `UnsupportedError` with the reason, never a filesystem snapshot in its place.
   *
   * @example Snapshot, then start a new sandbox from it
   * ```ts
   * import assert from "node:assert/strict";
   * import { Sandbox, Snapshot } from "@mvm/sdk";
   *
   * await using sb = await Sandbox.create();
   * await sb.files.write("/app/model.txt", "trained");
   * const snap = await sb.snapshot({ name: "trained", retention: "1h" });
   * assert.ok(snap.digests.content.some((f) => f.name === "app/model.txt"));
   * const copy = await Sandbox.create({ snapshot: snap });
   * assert.equal(await copy.files.readText("/app/model.txt"), "trained");
   * await copy.destroy();
   * await Snapshot.delete(snap.id);
   * ```
   */
  async snapshot(options: SnapshotOptions = {}): Promise<SnapshotInfo> {
    if (options === null || typeof options !== "object") throw invalid("options", "must be an object");
    const { name, retention, class: cls = "fs_quick" } = options;
    if (name !== undefined && (typeof name !== "string" || !NAME_RE.test(name))) {
      throw invalid("name", "must be 1-64 characters of letters, digits, '.', '_' or '-'");
    }
    if (cls !== "fs_quick" && cls !== "vm_full") throw invalid("class", 'must be "fs_quick" or "vm_full"');
    const retentionSeconds = retention === "forever" ? null : parseTtl(retention ?? DEFAULT_SNAPSHOT_RETENTION_SECONDS, "retention");
    const inner = this._engine();
    if (!inner.snapshot) throw new UnsupportedError(`the ${this.#engine} engine cannot snapshot sandboxes`);
    return await withHostPermissions(() => inner.snapshot!({ name, retentionSeconds, class: cls }));
  }

  /**
   * A new, independent sandbox that starts from this one's files, created with `options`; its
   * `forkedFrom` names this sandbox and says how. Where the engine's storage is copy-on-write (the
   * local engine with its state root on XFS or btrfs), the files are cloned by reflink while this
   * sandbox is frozen: flat in size, nothing stored, nothing to verify (`method: "clone"`). Elsewhere
   * it takes a fresh snapshot (default retention) and creates from it (`method: "snapshot"`;
   * `restoredFrom` names the snapshot; the digests it just computed are reused, `rehashed: false`, and
   * its seal and epoch are checked). `options.snapshot` forks from a snapshot taken before instead.
   *
   * @example Both sides change independently
   * ```ts
   * import assert from "node:assert/strict";
   * import { Sandbox, Snapshot } from "@mvm/sdk";
   *
   * await using sb = await Sandbox.create();
   * await sb.files.write("/app/n.txt", "1");
   * const child = await sb.fork();
   * await child.files.write("/app/n.txt", "2");
   * assert.equal(await sb.files.readText("/app/n.txt"), "1");
   * assert.equal(child.forkedFrom?.parentId, sb.id);
   * await child.destroy();
   * const snap = child.forkedFrom?.snapshotId; // a snapshot was taken (not on XFS/btrfs): its retention is 7 days
   * if (snap) await Snapshot.delete(snap);
   * ```
   */
  async fork(options: CreateOptions = {}): Promise<Sandbox> {
    if (options === null || typeof options !== "object") throw invalid("options", "must be an object");
    if (options.snapshot !== undefined) return await Sandbox.create({ engine: this.#engine, ...options });
    const inner = this._engine();
    if (await withHostPermissions(() => inner.cloneable?.() ?? Promise.resolve(false))) {
      const { spec, engine } = normalizeCreate({ engine: this.#engine, ...options });
      spec.fork = { parentId: this.id, clone: true };
      return await Sandbox.#createSpec(spec, engine, options);
    }
    const snap = await this.snapshot();
    const { spec, engine } = normalizeCreate({ engine: this.#engine, ...options, snapshot: snap.id });
    spec.snapshot = { id: snap.id, verify: true, reuse: true };
    spec.fork = { parentId: this.id, clone: false };
    return await Sandbox.#createSpec(spec, engine, options);
  }

  /** How this sandbox was forked, when it is a fork (`info().forkedFrom` too). */
  get forkedFrom(): ForkInfo | undefined {
    return this.#inner.forkedFrom;
  }

  /** How this sandbox was restored, when it started from a snapshot (`info().restoredFrom` too). */
  get restoredFrom(): RestoreInfo | undefined {
    return this.#inner.restoredFrom;
  }

  /** @internal For `{ resume: true }`: resumes the sandbox when the engine says it is paused. */
  async _resumeIfPaused(): Promise<void> {
    if ((await this.info()).state === "paused") await this.resume();
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

  /**
   * Replaces the sandbox's lease: it now ends `ttl` from now (a number of seconds or a string such
   * as `"10m"`, 1 s to 30 days), whether that extends or shortens it; works on connected handles
   * too. Returns the audit id; {@linkcode info} shows the new `expiresAt`.
   *
   * @example `await sb.setTtl("1h")`
   */
  async setTtl(ttl: string | number): Promise<string> {
    const seconds = parseTtl(ttl === undefined ? null : ttl, "ttl");
    const inner = this._engine();
    if (!inner.setTtl) throw new UnsupportedError(`the ${this.#engine} engine cannot change a sandbox's TTL`);
    return await withHostPermissions(() => inner.setTtl!(seconds));
  }

  /**
   * Replaces the sandbox's tags (what {@linkcode Sandbox.list} filters on and
   * `info().tags` shows) on a live sandbox; works on connected handles too.
   * Returns the audit id.
   *
   * @example `await sb.setTags({ team: "agents", stage: "review" })`
   */
  async setTags(tags: Record<string, string>): Promise<string> {
    const checked = checkStringMap(tags, "tags");
    const inner = this._engine();
    if (!inner.setTags) throw new UnsupportedError(`the ${this.#engine} engine cannot change a sandbox's tags`);
    return await withHostPermissions(() => inner.setTags!(checked));
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
