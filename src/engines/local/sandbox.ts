/**
 * One local sandbox as a client holds it: its state, its runners, and the parts (processes, files,
 * logs) that live in their own files. State comes from the folder's markers and from whether the
 * supervisor and the init are still the processes they were.
 *
 * @example
 * ```ts
 * import { LocalSandbox } from "./sandbox.ts";
 * console.log(typeof LocalSandbox);
 * ```
 * @module
 */
import { availableParallelism } from "node:os";
import { existsSync } from "node:fs";
import { ConflictError, NotFoundError, TransportError, UnsupportedError } from "../../errors.ts";
import type { Capabilities, CommandInfo, LogEvent, SandboxInfo } from "../../types.ts";
import type { EngineFiles, EngineProcess, EngineSandbox, EngineSnapshotOptions, EngineStartOptions } from "../contract.ts";
import type { ForkInfo, RestoreInfo, SnapshotInfo } from "../../snapshot.ts";
import { adoptTree, cloneTree, cowStorage, snapshotStore } from "./snapshot.ts";
import {
  type EffectiveLimits,
  effectiveLimits,
  freezeCgroup,
  makeCgroups,
  readSandboxCgroups,
  reapCgroups,
  type SandboxCgroups,
  signalCgroup,
  signalSession,
  v1FreezerGroup,
} from "./cgroups.ts";
import type { SandboxCore } from "./core.ts";
import { checkpointProbe } from "./checkpoint.ts";
import { localFiles } from "./files.ts";
import { releaseName } from "./names.ts";
import { type Job, jobFrame } from "./job.ts";
import { logStream } from "./logs.ts";
import type { Tools } from "./preflight.ts";
import { connectDetached, listDetached, startDetached } from "./detached.ts";
import { startProcess } from "./process.ts";
import { type Runner, type RunnerJob, RunnerPool } from "./runners.ts";
import { auditDir, auditLog, DEFAULT_TMP_MB, type Meta, type SandboxDir } from "./state.ts";
import { type AuditEntry, readAudit } from "../../audit.ts";
import { teardown } from "./supervisor.ts";
import { forgetSecrets, launchEgress } from "./network.ts";

/** How long stop() waits for the supervisor to end the jail and start a fresh one. */
const STOP_TIMEOUT_MS = 15_000;

/** How long a runner may take to acknowledge its job before it counts as stopped. */
const ACK_TIMEOUT_MS = 3_000;

/** A fresh per-process cgroup name. */
export function newCgroupName(): string {
  return `p${crypto.randomUUID().slice(0, 13)}`;
}

/** Effective limits by sandbox id: they are fixed at create, and reading them costs a helper spawn. */
const LIMITS = new Map<string, Promise<EffectiveLimits>>();

function cachedLimits(id: string, dirs: string[], fallback: EffectiveLimits): Promise<EffectiveLimits> {
  let p = LIMITS.get(id);
  if (!p) {
    if (LIMITS.size >= 1024) LIMITS.clear();
    p = effectiveLimits(dirs, hostCpus());
    LIMITS.set(id, p);
    p.catch(() => LIMITS.delete(id));
  }
  return p.catch(() => fallback);
}

/** The host's cores, as the runtime reports them (Node 20 has no `navigator`: node:os there). */
function hostCpus(): number {
  return (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? availableParallelism();
}

/** What the local engine can do. */
export function localCapabilities(): Capabilities {
  return {
    commands: true,
    files: true,
    logs: true,
    detach: true,
    pause: true,
    snapshot: true,
    fork: true,
    limits: { cpu: true, memory: true, pids: true },
    network: "none",
    pty: true,
    // memory to disk needs a checkpoint tool the engine does not drive (checkpoint.ts says why, per host)
    pauseToDisk: false,
  };
}

/** The file API with an audit entry for each operation that reads state (those that change it log an event already). */
function audited(files: EngineFiles, dir: SandboxDir): EngineFiles {
  const read = <T>(type: string, path: string, p: Promise<T>) => p.then((v) => (dir.audit(type, { path }), v));
  return {
    ...files,
    readStream: (path, range, signal) => read("files.read", path, files.readStream(path, range, signal)),
    readTar: (path, signal) => read("files.readTar", path, files.readTar(path, signal)),
    list: (path) => read("files.list", path, files.list(path)),
    stat: (path) => read("files.stat", path, files.stat(path)),
    realpath: (path) => read("files.realpath", path, files.realpath!(path)),
    readlink: (path) => read("files.readlink", path, files.readlink!(path)),
  };
}

/** Snapshots and fork clones under way in this process, by sandbox id. */
const FREEZING = new Map<string, Promise<unknown>>();

/** A local sandbox. */
export class LocalSandbox implements EngineSandbox, SandboxCore {
  readonly id: string;
  readonly cgroups: SandboxCgroups | null;
  readonly files: EngineFiles;
  #pool: RunnerPool;
  #groups: string[] = [];
  #refill: Promise<number> | null = null;
  #toReap: string[] = [];
  #reaping: Promise<number> | null = null;

  constructor(readonly dir: SandboxDir, public meta: Meta, readonly tools: Tools) {
    this.id = dir.id;
    this.cgroups = readSandboxCgroups(dir.file("cgroups"), tools.tag, dir.id);
    this.files = audited(localFiles(this), this.dir);
    this.#pool = this.#newPool();
  }

  /** A client's runners; a stopped sandbox's fresh jail takes runners for file operations too. */
  #newPool(): RunnerPool {
    return new RunnerPool({
      id: this.id,
      tools: this.tools,
      initPid: (what) => this.#assertRunning(what, { stopped: true }),
      takeCgroups: async () => this.cgroups ? { cg: await this.#takeCgroup(), join: this.cgroups.join } : null,
      slotsDir: this.dir.file("runners"),
      uid: this.meta.sandboxUid,
      reap: (cg) => this.reap(cg),
      killTree: (r, signal) => this.killTree(r, signal),
    });
  }

  capabilities(): Capabilities {
    const limits = this.cgroups !== null;
    const pause = limits && (this.#v1Freezer !== undefined || this.tools.layout?.v2Freeze === true);
    return { ...localCapabilities(), pause, limits: { cpu: limits, memory: limits, pids: limits } };
  }

  /** The sandbox's v1 freezer group, when its pause() uses the v1 freezer (see `chooseFreezer`). */
  get #v1Freezer(): string | undefined {
    return v1FreezerGroup(this.cgroups, this.tools.layout);
  }

  /** The group pause() freezes: the v1 freezer group the sandbox joined, else its v2 group. */
  #freezeGroup(cg: SandboxCgroups): string {
    return this.#v1Freezer ?? cg.v2;
  }

  #state(): SandboxInfo["state"] {
    if (!this.dir.exists() || this.dir.has("destroying")) return "destroyed";
    if (this.dir.has("stopped")) return "stopped";
    if (this.dir.has("paused")) return "paused";
    return "running";
  }

  /**
   * Throws unless the sandbox runs (or is paused, alive but frozen, with `paused`; or is stopped, its
   * jail holding no guest process, with `stopped`: file operations); returns the pid of its init (the
   * way in).
   */
  #assertRunning(what: string, allow: { paused?: boolean; stopped?: boolean } = {}): number {
    const s = this.#state();
    if (s === "paused" && !allow.paused) {
      throw new ConflictError(`sandbox ${this.id} is paused; cannot ${what} (resume() it first, or pass { resume: true })`, {
        details: { id: this.id, state: s },
      });
    }
    if (s === "destroyed") {
      throw new NotFoundError(`sandbox ${this.id} is gone (destroyed or its TTL ran out); cannot ${what}`, { details: { id: this.id } });
    }
    if (s === "stopped" && !(allow.stopped && this.dir.has("stopped.done"))) {
      throw new ConflictError(
        `sandbox ${this.id} is stopped; cannot ${what} (start() it first; its files can be read and written meanwhile)`,
        {
          details: { id: this.id, state: s },
        },
      );
    }
    const { init } = this.dir.readPids();
    if (!init || !this.dir.supervised() || !this.dir.jailed()) {
      throw new TransportError(`sandbox ${this.id} is not running any more (its init or supervisor died); cannot ${what}`, {
        details: { id: this.id },
      });
    }
    return init.pid;
  }

  deathError(what: string): Error | null {
    try {
      // a file operation may run in a stopped sandbox's fresh jail; a process never outlives a stop
      this.#assertRunning(what, { paused: true, stopped: what.startsWith("files.") });
      return null;
    } catch (e) {
      const why = (e as Error).message.replace(/; cannot .*$/, "");
      return new TransportError(`${why}: cannot ${what}; output or results may be incomplete`, { details: { id: this.id }, cause: e });
    }
  }

  async info(): Promise<SandboxInfo> {
    // another handle (or process) may have changed the lease
    const m = this.meta = this.dir.readMeta() ?? this.meta;
    let state = this.#state();
    if ((state === "running" || state === "paused") && this.deathError("run") !== null) state = "destroyed";
    const cg = this.cgroups;
    const dirs = cg ? [cg.v2, ...(cg.memory ? [cg.memory] : []), ...cg.join] : [];
    const { cpu, memoryMb, pidsLimit } = m.limits;
    const limits = await cachedLimits(this.id, dirs, { cpu, memoryMb, pidsLimit } as EffectiveLimits);
    this.dir.audit("sandbox.info", { state });
    return {
      id: m.id,
      state,
      engine: "local",
      image: m.template ?? m.image,
      name: m.name,
      workloadId: m.workloadId,
      tags: { ...m.tags },
      createdAt: m.createdAt,
      expiresAt: m.expiresAt,
      ttlSeconds: m.ttlSeconds,
      detached: this.dir.has("detached"),
      limits: { ...limits, tmpSizeMb: m.limits.tmpSizeMb ?? DEFAULT_TMP_MB },
      ...(m.restoredFrom ? { restoredFrom: { ...m.restoredFrom } } : {}),
      ...(m.forkedFrom ? { forkedFrom: { ...m.forkedFrom, skipped: [...m.forkedFrom.skipped] } } : {}),
    };
  }

  /** Keeps one runner ready (after create, so the first command finds it). */
  warm(): void {
    this.#pool.warm();
  }

  /** Settles when the runner being spawned ahead (if any) is ready or has failed. */
  warmed(): Promise<void> {
    return this.#pool.settled();
  }

  /**
   * Starts a job on a runner and waits for its acknowledgement. A runner that does not acknowledge
   * in time was stopped by guest code (it runs as the guest's uid, so the guest may signal it,
   * though never trace it): it is killed and the job goes to a fresh runner, so a stopped helper
   * delays an operation but never hangs or falsifies it.
   */
  async exec(job: Job, keepStdin: boolean, what: string): Promise<RunnerJob> {
    const frame = jobFrame(job, keepStdin);
    const allow = { stopped: job.kind !== "command" };
    for (let attempt = 0;; attempt++) {
      this.#assertRunning(what, allow);
      const r = await this.#pool.take(what, attempt > 0);
      let ack: number | null | "late" = null;
      let j: RunnerJob | undefined;
      try {
        j = await this.#pool.begin(r, frame, keepStdin);
        let timer: ReturnType<typeof setTimeout> | undefined;
        ack = await Promise.race([r.ctl.byte(), new Promise<"late">((res) => timer = setTimeout(() => res("late"), ACK_TIMEOUT_MS))]);
        clearTimeout(timer);
      } catch {
        /* the runner died: below */
      }
      if (ack === 0x4a /* J */ && j) return j;
      await this.killTree(r, "SIGKILL");
      r.child.kill("SIGKILL");
      j?.stdin?.abort().catch(() => {});
      j?.stdout.cancel().catch(() => {});
      j?.stderr.cancel().catch(() => {});
      r.spent = true;
      this.#pool.finish(r, false);
      this.#assertRunning(what, allow);
      if (attempt >= 2) {
        throw new TransportError(
          `could not start ${what} in sandbox ${this.id}: the SDK's runner ${
            ack === "late" ? "was stopped" : "died"
          } (guest code can signal it)`,
          {
            details: { id: this.id },
          },
        );
      }
    }
  }

  /** Takes the per-process groups the supervisor made at create. */
  adoptCgroups(names: string[]): void {
    if (this.cgroups) this.#groups.push(...names.map((n) => `${this.cgroups!.v2}/${n}`));
  }

  /** A fresh per-process cgroup; made eight at a time, ahead of need, to keep mkdir off the command's path. */
  async #takeCgroup(): Promise<string> {
    const refill = () =>
      this.#refill ??= makeCgroups(Array.from({ length: 8 }, () => `${this.cgroups!.v2}/${newCgroupName()}`))
        .then((dirs) => {
          this.#groups.push(...dirs);
          return dirs.length;
        })
        .finally(() => this.#refill = null);
    for (let empty = 0; this.#groups.length === 0;) {
      // the sandbox's group is gone (it died) or takes no more: say so instead of trying forever
      if (empty >= 3) {
        this.#assertRunning("make a cgroup for a process");
        throw new TransportError(`sandbox ${this.id}: cannot make a cgroup for a process`, { details: { id: this.id } });
      }
      if ((await refill()) === 0) empty++;
    }
    const dir = this.#groups.shift()!;
    if (this.#groups.length < 3) refill().catch(() => {});
    return dir;
  }

  async killTree(r: Runner, signal: string): Promise<void> {
    if (r.cg) await signalCgroup(r.cg, signal, r.child.pid).catch(() => {});
    else await signalSession(r.child.pid, signal).catch(() => {});
  }

  reap(cg: string | null): Promise<number> {
    if (!cg) return Promise.resolve(0);
    this.#toReap.push(cg);
    return this.#reaping ??= new Promise<void>((r) => setTimeout(r, 0)).then(() => {
      const dirs = this.#toReap.splice(0);
      this.#reaping = null;
      return reapCgroups(dirs, this.cgroups?.memory).catch(() => 0);
    });
  }

  start(argv: string[], opts: EngineStartOptions): Promise<EngineProcess> {
    return opts.detached ? startDetached(this, argv, opts) : startProcess(this, argv, opts);
  }

  commands(): Promise<CommandInfo[]> {
    return Promise.resolve(listDetached(this));
  }

  connectCommand(id: string, from: "start" | "now"): Promise<EngineProcess> {
    this.#assertRunning("connect to a command");
    return Promise.resolve(connectDetached(this, id, from));
  }

  logs(opts: { follow: boolean }): ReadableStream<LogEvent> {
    this.dir.audit("logs.read", { follow: opts.follow });
    return logStream(this.dir, this.id, opts);
  }

  audit(): ReadableStream<AuditEntry> {
    auditLog(this.dir.root).ingest();
    return readAudit(auditDir(this.dir.root), { sandbox: this.id });
  }

  /**
   * Ends every process of the sandbox and keeps its files: the supervisor kills the jail (thawing it
   * first when paused) and starts a fresh one with no guest process, through which file operations
   * keep working until {@linkcode start}. The lease goes on.
   */
  async stop(): Promise<string> {
    const s = this.#state();
    if (s === "destroyed") throw new NotFoundError(`sandbox ${this.id} is gone`, { details: { id: this.id } });
    if (s === "stopped") {
      await this.#stopDone("stop");
      return this.dir.appendEvent("stop.noop");
    }
    this.#pool.close();
    this.dir.unmark("stopped.done");
    this.dir.mark("stopped");
    const id = this.dir.appendEvent("stopped");
    if (!this.dir.poke()) {
      throw new TransportError(`sandbox ${this.id} is not running any more (its supervisor died); cannot stop it`, {
        details: { id: this.id },
      });
    }
    await this.#stopDone("stop");
    this.dir.unmark("paused");
    this.#pool = this.#newPool();
    return id;
  }

  /** Waits until the supervisor has ended the jail's processes and started the fresh one. */
  async #stopDone(what: string): Promise<void> {
    const deadline = Date.now() + STOP_TIMEOUT_MS;
    while (!this.dir.has("stopped.done")) {
      if (this.#state() === "destroyed") {
        throw new NotFoundError(`sandbox ${this.id} is gone; cannot ${what} it`, { details: { id: this.id } });
      }
      if (Date.now() > deadline || !this.dir.supervised()) {
        throw new TransportError(
          `sandbox ${this.id}: its supervisor did not restart the jail within ${STOP_TIMEOUT_MS / 1000} s; cannot ${what} it`,
          {
            details: { id: this.id },
          },
        );
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Brings a stopped sandbox back to `running`: its fresh jail takes commands again. */
  async startStopped(): Promise<string> {
    const s = this.#state();
    if (s === "destroyed") throw new NotFoundError(`sandbox ${this.id} is gone; cannot start it`, { details: { id: this.id } });
    if (s === "running") {
      this.#assertRunning("start");
      return this.dir.appendEvent("start.noop");
    }
    if (s === "paused") {
      throw new ConflictError(`sandbox ${this.id} is paused; start() is for stopped sandboxes (use resume())`, {
        details: { id: this.id, state: s },
      });
    }
    await this.#stopDone("start");
    this.#assertRunning("start", { stopped: true });
    // the fresh jail has a fresh network namespace: its egress (if any) starts again before any command
    if (existsSync(this.dir.file("egress.conf"))) await launchEgress(this.tools, this.dir);
    this.dir.unmark("stopped");
    this.dir.unmark("stopped.done");
    return this.dir.appendEvent("sandbox.started");
  }

  /**
   * Freezes every process of the sandbox (cgroup v2's freezer, or the v1 freezer group it joined at
   * create; the host-side helpers in its groups too). The TTL keeps running. Idempotent.
   */
  async pause(opts: { toDisk?: boolean } = {}): Promise<string> {
    if (opts.toDisk) {
      const probe = await checkpointProbe();
      throw new UnsupportedError(`pause({ toDisk: true }) needs a memory checkpoint tool: ${probe.reason}`, {
        details: { tool: probe.tool, version: probe.version, works: probe.works },
      });
    }
    const s = this.#state();
    if (s === "paused") return this.dir.appendEvent("pause.noop");
    if (s === "stopped") {
      throw new ConflictError(`sandbox ${this.id} is stopped; cannot pause it (start() it first)`, { details: { id: this.id, state: s } });
    }
    this.#assertRunning("pause");
    if (!this.cgroups) {
      throw new UnsupportedError(
        "pausing needs the cgroup freezer, and this host gives the SDK no writable cgroups (run as root, or with a delegated cgroup)",
      );
    }
    // marked first, so no new operation starts while the freezer works
    this.dir.mark("paused");
    const group = this.#freezeGroup(this.cgroups);
    const r = await freezeCgroup(group, true).catch(() => "failed" as const);
    if (r !== "ok") {
      await freezeCgroup(group, false).catch(() => {});
      this.dir.unmark("paused");
      if (r === "nofreeze") {
        throw new UnsupportedError(
          `cannot pause sandbox ${this.id}: its cgroup ${group} has no freezer (cgroup v2's cgroup.freeze needs Linux ≥ 5.2; ` +
            `without it, sandboxes use the v1 freezer controller when it is mounted, and none is here)`,
        );
      }
      this.#assertRunning("pause");
      throw new TransportError(`sandbox ${this.id} did not freeze within 2 s; it was left running`, { details: { id: this.id } });
    }
    return this.dir.appendEvent("paused");
  }

  /** Thaws a paused sandbox; a running one stays as it is. */
  async resume(): Promise<string> {
    const s = this.#state();
    if (s === "running") {
      this.#assertRunning("resume");
      return this.dir.appendEvent("resume.noop");
    }
    if (s === "stopped") {
      throw new ConflictError(`sandbox ${this.id} is stopped; resume() is for paused sandboxes (use start())`, {
        details: { id: this.id, state: s },
      });
    }
    this.#assertRunning("resume", { paused: true });
    const r = this.cgroups ? await freezeCgroup(this.#freezeGroup(this.cgroups), false).catch(() => "failed" as const) : "nofreeze";
    if (r !== "ok") {
      this.#assertRunning("resume", { paused: true });
      throw new TransportError(`sandbox ${this.id} did not thaw within 2 s; it is still paused`, { details: { id: this.id } });
    }
    this.dir.unmark("paused");
    return this.dir.appendEvent("resumed");
  }

  /** How the sandbox was restored, when it started from a snapshot. */
  get restoredFrom(): RestoreInfo | undefined {
    return this.meta.restoredFrom ? { ...this.meta.restoredFrom } : undefined;
  }

  /**
   * Captures the sandbox's writable root into a sealed snapshot while its processes are frozen (a
   * paused sandbox stays paused, a stopped one holds no guest process); thawed after, even on failure.
   * A sandbox restored on an overlay is copied from inside its launcher's mount namespace, where the
   * overlay is mounted.
   */
  snapshot(opts: EngineSnapshotOptions): Promise<SnapshotInfo> {
    return this.#oneAtATime(() => this.#snapshot(opts));
  }

  /** One snapshot or fork clone at a time per sandbox in this process, so one's thaw never ends another's freeze. */
  #oneAtATime<T>(fn: () => Promise<T>): Promise<T> {
    const run = (FREEZING.get(this.id) ?? Promise.resolve()).catch(() => {}).then(fn);
    FREEZING.set(this.id, run);
    return run.finally(() => {
      if (FREEZING.get(this.id) === run) FREEZING.delete(this.id);
    });
  }

  /**
   * Runs `fn` on the sandbox's files while no guest process can change them: frozen through the cgroup
   * freezer (a paused sandbox stays paused; thawed after, even on failure), or stopped. Fails closed:
   * a sandbox that does not freeze is not read. `fn` gets the init's pid.
   */
  async #whileFrozen<T>(what: string, fn: (init: number) => Promise<T>): Promise<T> {
    const { init, group } = await this.#freezable(what);
    let froze = false;
    try {
      if (group) {
        froze = true;
        const r = await freezeCgroup(group, true).catch(() => "failed" as const);
        if (r !== "ok") {
          throw new TransportError(`sandbox ${this.id} did not freeze within 2 s; no ${what} was taken`, { details: { id: this.id } });
        }
      }
      return await fn(init);
    } finally {
      // a pause() from elsewhere meanwhile keeps it frozen
      if (froze && group && !this.dir.has("paused")) await freezeCgroup(group, false).catch(() => {});
    }
  }

  /** The checks before a consistent read of the files: the init's pid, and the group to freeze (null: paused or stopped already). */
  async #freezable(what: string): Promise<{ init: number; group: string | null }> {
    const s = this.#state();
    if (s === "destroyed") throw new NotFoundError(`sandbox ${this.id} is gone; cannot ${what} it`, { details: { id: this.id } });
    if (!this.cgroups && s !== "stopped") {
      throw new UnsupportedError(
        `a consistent ${what} of a running sandbox needs the cgroup freezer, and this host gives the SDK no writable cgroups: stop() it first, then ${what}`,
      );
    }
    if (s === "stopped") await this.#stopDone(what);
    const init = this.#assertRunning(what, { paused: true, stopped: true });
    return { init, group: this.cgroups && !this.dir.has("paused") ? this.#freezeGroup(this.cgroups) : null };
  }

  /**
   * Whether a fork can clone this sandbox's root directly: the state root clones files by reflink, and
   * the root is a plain folder (not an overlay restore, whose files are only visible in its launcher).
   */
  async cloneable(): Promise<boolean> {
    return this.meta.restoredFrom?.restore !== "overlay" && this.#state() !== "destroyed" && await cowStorage(this.tools.root);
  }

  /**
   * Clones the sandbox's writable root into `dst` (a fork's root folder, which no process uses yet) by
   * reflink while it is frozen (thawed as soon as the clone is made, even on failure), and gives the
   * clone to `uid`. O(files): no byte is copied, nothing is hashed. Returns what was left out.
   */
  cloneInto(dst: string, uid: number): Promise<{ name: string; kind: string }[]> {
    return this.#oneAtATime(async () => {
      const { group } = await this.#freezable("fork");
      const r = await cloneTree(this.dir.file("root"), dst, group, this.dir.file("paused"));
      if (!r.thawed && group && !this.dir.has("paused")) await freezeCgroup(group, false).catch(() => {});
      return adoptTree(dst, uid === this.tools.uid ? null : uid);
    });
  }

  /** How the sandbox was forked, when it is a fork. */
  get forkedFrom(): ForkInfo | undefined {
    return this.meta.forkedFrom ? { ...this.meta.forkedFrom, skipped: [...this.meta.forkedFrom.skipped] } : undefined;
  }

  async #snapshot(opts: EngineSnapshotOptions): Promise<SnapshotInfo> {
    if (opts.class === "vm_full") {
      const probe = await checkpointProbe();
      throw new UnsupportedError(
        `a vm_full snapshot (memory too) needs a memory checkpoint tool: ${probe.reason}; take an fs_quick snapshot for the files only`,
        { details: { class: "vm_full", tool: probe.tool, version: probe.version, works: probe.works } },
      );
    }
    const store = snapshotStore(this.tools);
    store.sweep();
    const { id, tmp } = store.stage();
    try {
      await this.#whileFrozen("snapshot", async (init) => {
        await store.copyIn(this.dir.file("root"), tmp, this.meta.restoredFrom?.restore === "overlay" ? init : undefined);
      });
      const now = Date.now();
      return await store.seal(id, tmp, {
        name: opts.name,
        sandboxId: this.id,
        class: "fs_quick",
        createdAt: new Date(now).toISOString(),
        expiresAt: opts.retentionSeconds === null ? null : new Date(now + opts.retentionSeconds * 1000).toISOString(),
        parent: this.meta.restoredFrom?.snapshotId ?? null,
      });
    } catch (e) {
      store.discard(tmp);
      throw e;
    }
  }

  async destroy(): Promise<string> {
    this.#pool.close();
    const id = this.dir.appendEvent("destroy.requested");
    await teardown(this.dir, this.tools);
    forgetSecrets(this.id);
    if (this.meta.name !== undefined) await releaseName(this.tools.root, this.meta.name, this.id);
    return id;
  }

  setTags(tags: Record<string, string>): Promise<string> {
    if (this.#state() === "destroyed") {
      throw new NotFoundError(`sandbox ${this.id} is gone; cannot set its tags`, { details: { id: this.id } });
    }
    this.meta = this.dir.updateMeta((meta) => ({ ...meta, tags: { ...tags } }), this.meta);
    return Promise.resolve(this.dir.appendEvent("tags.set", { tags }));
  }

  setTtl(seconds: number): Promise<string> {
    const s = this.#state();
    if (s === "destroyed") throw new NotFoundError(`sandbox ${this.id} is gone; cannot set its TTL`, { details: { id: this.id } });
    const expiresAt = new Date(Date.now() + seconds * 1000).toISOString();
    this.meta = this.dir.updateMeta((meta) => ({ ...meta, expiresAt, ttlSeconds: seconds }), this.meta);
    this.dir.replace("ttl", String(seconds));
    if (!this.dir.poke()) {
      throw new TransportError(`sandbox ${this.id} is not running any more (its supervisor died); cannot set its TTL`, {
        details: { id: this.id },
      });
    }
    return Promise.resolve(this.dir.appendEvent("ttl.set", { expiresAt, ttlSeconds: seconds }));
  }

  detach(): Promise<string> {
    this.#assertRunning("detach");
    this.dir.mark("detached");
    return Promise.resolve(this.dir.appendEvent("detached", { expiresAt: this.meta.expiresAt }));
  }

  disconnect(): Promise<void> {
    this.#pool.close();
    return Promise.resolve();
  }
}
