/**
 * The embedded default engine: real sandboxes with Linux namespaces through
 * bubblewrap. Each sandbox has a host-side supervisor (a shell holding the
 * lease, see `scripts.ts`) and runs every guest process and file operation
 * inside its namespaces, root and credentials via `nsenter`, with all
 * capabilities dropped. Limits, TTL, teardown and whole-tree kills are done
 * from the host (cgroups), never trusted to the guest.
 *
 * @example
 * ```ts
 * import { Sandbox } from "../../../mod.ts";
 * await using sb = await Sandbox.create({ engine: "local" });
 * console.log((await sb.commands.run(["id", "-u"])).stdout); // "0\n" (an unprivileged host uid)
 * ```
 * @module
 */
import {
  chownSync,
  closeSync,
  existsSync,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import process from "node:process";
import {
  ConflictError,
  InternalError,
  InvalidInputError,
  IsADirectoryError,
  NoSpaceError,
  NotADirectoryError,
  NotFoundError,
  PermissionDeniedError,
  type SandboxError,
  TimeoutError,
  TransportError,
  UnsupportedError,
} from "../../errors.ts";
import { type ChildProcess, getEnv, hostPid, hostPlatform, hostUid, pidExists, runtime } from "../../runtime/mod.ts";
import type { SandboxSpec } from "../../spec.ts";
import { collectText } from "../../streams.ts";
import type { Capabilities, FileInfo, LogEvent, ProcessStatus, SandboxInfo } from "../../types.ts";
import type { Engine, EngineFiles, EngineProcess, EngineSandbox, EngineStartOptions, WrittenFile } from "../contract.ts";
import {
  type CgroupLayout,
  collectOrphanCgroups,
  detectCgroups,
  makeCgroups,
  readSandboxCgroups,
  reapCgroups,
  removeCgroups,
  type SandboxCgroups,
  signalCgroup,
  signalSession,
  supervisorCgroupEnv,
} from "./cgroups.ts";
import { RUNNER_SH, shellWord, SUPERVISOR_SH } from "./scripts.ts";
import { appendEvent, type Meta, readMeta, readPid, stateRoot } from "./state.ts";

const ID_RE = /^sbx-[a-z0-9]{12}$/;
const GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const DEFAULT_PIDS = 1024;
const DEFAULT_TMP_MB = 512;
/**
 * How much output each stream holds for a reader who is not reading yet: a process that
 * prints up to this much and exits has a `status` without anyone reading; past it, the
 * process waits for the reader (backpressure), and memory stays bounded.
 */
const OUTPUT_BUFFER = new ByteLengthQueuingStrategy({ highWaterMark: 1 << 20 });
const READY_TIMEOUT_MS = 15_000;

function which(bin: string): string | null {
  for (const dir of (getEnv("PATH") ?? "/usr/bin:/bin").split(":")) {
    if (dir && existsSync(`${dir}/${bin}`)) return `${dir}/${bin}`;
  }
  for (const dir of ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]) if (existsSync(`${dir}/${bin}`)) return `${dir}/${bin}`;
  return null;
}

interface Tools {
  bwrap: string;
  nsenter: string;
  setsid: string;
  setpriv: string;
  uid: number;
  root: string;
  layout: CgroupLayout | null;
}
let tools: Promise<Tools> | undefined;

function preflight(): Promise<Tools> {
  return tools ??= preflightOnce().catch((e) => {
    tools = undefined;
    throw e;
  });
}

async function preflightOnce(): Promise<Tools> {
  if (hostPlatform() !== "linux") {
    throw new UnsupportedError(
      `the local engine needs Linux (namespaces and bubblewrap); this is ${hostPlatform()}. Use the mvmctl engine (Vz microVMs on macOS) instead.`,
    );
  }
  const wanted = getEnv("MVM_BWRAP");
  const bwrap = wanted ? (existsSync(wanted) ? wanted : null) : which("bwrap");
  if (!bwrap) {
    throw new NotFoundError(
      `bubblewrap (bwrap) is not installed${
        wanted ? ` at MVM_BWRAP=${wanted}` : ""
      }: install the package 'bubblewrap' (apt-get install bubblewrap / dnf install bubblewrap / pacman -S bubblewrap)`,
      { details: { binary: "bwrap", package: "bubblewrap" } },
    );
  }
  const need = (b: string) => {
    const p = which(b);
    if (!p) {
      throw new NotFoundError(`${b} is not installed: install the package 'util-linux' (apt-get install util-linux)`, {
        details: { binary: b, package: "util-linux" },
      });
    }
    return p;
  };
  const t = { bwrap, nsenter: need("nsenter"), setsid: need("setsid"), setpriv: need("setpriv") };
  const uid = await hostUid();
  return { ...t, uid, root: stateRoot(uid), layout: await detectCgroups() };
}

/** Maps an upstream template onto the host image, or explains what exists. */
function resolveImage(spec: SandboxSpec): string {
  if (spec.template === undefined) {
    if (spec.image !== "host") {
      throw new UnsupportedError(
        `the local engine runs the "host" image only (got ${JSON.stringify(spec.image)}); use the mvmctl engine for OCI or nix images`,
      );
    }
    return "host";
  }
  const t = spec.template;
  const available = availableTemplates();
  if (available.includes(t)) return t;
  throw new NotFoundError(
    `template ${JSON.stringify(t)} is not available on this host's image; available: ${
      available.join(", ")
    } (or omit it for the "host" image)`,
    { details: { template: t, available } },
  );
}

function availableTemplates(): string[] {
  const out = ["host", "minimal"];
  try {
    for (const f of readdirSync("/usr/bin")) {
      const m = /^python(3\.\d+)$/.exec(f);
      if (m) out.push(`python-${m[1]}`);
    }
  } catch { /* no /usr/bin */ }
  if (existsSync("/usr/bin/node")) {
    out.push("node-lts");
    try {
      // node's major version, read from its headers' version file when installed alongside
      const v = readFileSync("/usr/include/node/node_version.h", "utf8");
      const m = /#define NODE_MAJOR_VERSION (\d+)/.exec(v);
      if (m) out.push(`node-${m[1]}`);
    } catch { /* unknown major */ }
  }
  return out.sort();
}

function rootBindArgs(): string[] {
  const args: string[] = [];
  for (const name of ["bin", "sbin", "lib", "lib32", "lib64", "libx32"]) {
    const p = `/${name}`;
    let st;
    try {
      st = lstatSync(p);
    } catch {
      continue;
    }
    if (st.isSymbolicLink()) args.push("--symlink", readlinkSync(p), p);
    else if (st.isDirectory()) args.push("--ro-bind", p, p);
  }
  return args;
}

function newCgroupName(): string {
  return `p${crypto.randomUUID().slice(0, 13)}`;
}

function randomId(): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return "sbx-" + Array.from(bytes, (b) => alphabet[b % 36]).join("");
}

function cgroupEnv(dirs: string[]): Record<string, string> {
  if (dirs.length > 4) throw new InternalError(`a process can join at most 4 cgroups, got ${dirs.length}`);
  return Object.fromEntries([1, 2, 3, 4].map((i) => [`MVM_CG${i}`, dirs[i - 1] ?? ""]));
}

/** What a runner is asked to do: a guest command, or one agent file operation. */
type Job =
  | { kind: "command"; argv: string[]; env: Record<string, string>; cwd: string }
  | { kind: "agent"; op: string; args: string[]; nonce?: string };

/** A runner: spawned, entered, waiting for its job line. */
interface Runner {
  child: ChildProcess;
  cg: string | null;
  dead: boolean;
}

/**
 * The job line a runner evals. Every word is single-quoted, so nothing in it is
 * expanded; the agent resets PATH and IFS itself, so the sandbox's env cannot
 * steer its tools.
 */
function jobLine(job: Job): string {
  if (job.kind === "agent") {
    const nonce = job.nonce ?? crypto.randomUUID().slice(0, 8);
    return `MVM_NONCE=${shellWord(nonce)}; mvm_agent ${[job.op, ...job.args].map(shellWord).join(" ")}`;
  }
  const parts: string[] = [];
  if (job.cwd !== "/") parts.push(`cd -- ${shellWord(job.cwd)} || exit 125`);
  for (const [k, v] of Object.entries(job.env)) parts.push(`export ${k}=${shellWord(v)}`);
  parts.push(`exec ${job.argv.map(shellWord).join(" ")}`);
  return parts.join("; ");
}

function guestEnv(meta: Meta): Record<string, string> {
  return { PATH: GUEST_PATH, HOME: "/root", LANG: "C.UTF-8", TERM: "dumb", ...meta.env };
}

const ERROR_CLASSES: Record<string, new (m: string, o?: { details?: Record<string, unknown> }) => SandboxError> = {
  NOT_FOUND: NotFoundError,
  NOT_A_DIRECTORY: NotADirectoryError,
  IS_A_DIRECTORY: IsADirectoryError,
  PERMISSION_DENIED: PermissionDeniedError,
  NO_SPACE: NoSpaceError,
  CONFLICT: ConflictError,
  INVALID_INPUT: InvalidInputError,
  INTERNAL: InternalError,
};

/** The category of an error message from a tool the agent ran (coreutils, dd, tar). */
function classify(message: string): string {
  const table: Array<[RegExp, string]> = [
    [/No such file or directory/, "NOT_FOUND"],
    [/Not a directory/, "NOT_A_DIRECTORY"],
    [/Is a directory|cannot overwrite directory/, "IS_A_DIRECTORY"],
    [/Permission denied|Read-only file system|Operation not permitted/, "PERMISSION_DENIED"],
    [/No space left|Disk quota/, "NO_SPACE"],
    [/File exists|Directory not empty/, "CONFLICT"],
    [/File name too long|Too many levels of symbolic links/, "INVALID_INPUT"],
  ];
  return table.find(([re]) => re.test(message))?.[1] ?? "INTERNAL";
}

function agentError(stderr: string, op: string, path: string): SandboxError {
  const m = /mvm-error (\S+) ([\s\S]*)/.exec(stderr);
  const code = m && m[1] !== "?" ? m[1] : classify(stderr);
  const detail = (m?.[2] ?? stderr).trim().slice(0, 500);
  const Cls = ERROR_CLASSES[code] ?? InternalError;
  return new Cls(`files.${op} ${JSON.stringify(path)}: ${detail || "failed"}`, { details: { path, op } });
}

function absolute(path: string): string {
  return path.startsWith("/") ? path : `/${path}`;
}

function parseInfos(out: string): FileInfo[] {
  const infos: FileInfo[] = [];
  for (const rec of out.split("\0")) {
    if (!rec) continue;
    const parts = rec.split("\t");
    if (parts.length < 5) continue;
    const [t, size, mode, mtime] = parts;
    const path = parts.slice(4).join("\t");
    infos.push({
      path,
      name: path === "/" ? "/" : path.replace(/\/+$/, "").split("/").pop() ?? path,
      type: t === "f" ? "file" : t === "d" ? "dir" : t === "l" ? "symlink" : "other",
      size: Number(size),
      mode: parseInt(mode, 8),
      mtime: new Date(Number(mtime) * 1000).toISOString(),
    });
  }
  return infos;
}

class LocalSandbox implements EngineSandbox {
  readonly id: string;
  readonly dir: string;
  readonly meta: Meta;
  readonly cgroups: SandboxCgroups | null;
  readonly #tools: Tools;

  constructor(id: string, dir: string, meta: Meta, t: Tools) {
    this.id = id;
    this.dir = dir;
    this.meta = meta;
    this.cgroups = readSandboxCgroups(dir);
    this.#tools = t;
  }

  capabilities(): Capabilities {
    const c = capabilities();
    const limits = this.cgroups !== null;
    return { ...c, limits: { cpu: limits, memory: limits, pids: limits } };
  }

  #state(): SandboxInfo["state"] {
    if (!existsSync(this.dir) || existsSync(`${this.dir}/destroying`)) return "destroyed";
    if (existsSync(`${this.dir}/stopped`)) return "stopped";
    return "running";
  }

  #assertRunning(what: string): number {
    const s = this.#state();
    if (s === "destroyed") {
      throw new NotFoundError(`sandbox ${this.id} is gone (destroyed or its TTL ran out); cannot ${what}`, { details: { id: this.id } });
    }
    if (s === "stopped") {
      throw new ConflictError(`sandbox ${this.id} is stopped; cannot ${what} (destroy it, or create a new one)`, {
        details: { id: this.id, state: s },
      });
    }
    const pid = readPid(`${this.dir}/init.pid`);
    if (!pidExists(pid)) {
      throw new TransportError(`sandbox ${this.id}'s init process is gone; cannot ${what}`, { details: { id: this.id } });
    }
    return pid;
  }

  /** Whether the sandbox went away (for streams that end). */
  gone(): boolean {
    return this.#state() === "destroyed";
  }

  info(): Promise<SandboxInfo> {
    const m = this.meta;
    return Promise.resolve({
      id: m.id,
      state: this.#state(),
      engine: "local",
      image: m.template ?? m.image,
      name: m.name,
      workloadId: m.workloadId,
      tags: { ...m.tags },
      createdAt: m.createdAt,
      expiresAt: m.expiresAt,
      ttlSeconds: m.ttlSeconds,
      detached: existsSync(`${this.dir}/detached`),
      limits: { ...m.limits },
    });
  }

  /**
   * Starts a job inside the sandbox on a runner: a host shell puts itself in a
   * fresh per-process cgroup (and the sandbox's v1 groups), execs nsenter into
   * the sandbox's namespaces and root, setpriv drops every capability, and a
   * shell there waits for the job line. One runner is kept spawned ahead of
   * need, so a job usually costs one line written and one exec.
   */
  async exec(job: Job, stdin: boolean, what: string): Promise<{ child: ChildProcess; cg: string | null }> {
    this.#assertRunning(what);
    const take = () => {
      let r = this.#spares.pop();
      while (r?.dead) {
        this.#reap(r.cg);
        r = this.#spares.pop();
      }
      return r;
    };
    // a runner already on its way is sooner than a new one, and two spawns at once only slow each other
    let r = take() ?? (this.#spawning ? (await this.#spawning, take()) : undefined);
    r ??= await this.#spawnRunner(what);
    this.warm();
    r.child.ref();
    const writer = r.child.stdin!.getWriter();
    try {
      await writer.write(new TextEncoder().encode(jobLine(job) + "\n"));
      if (!stdin) await writer.close();
    } catch (e) {
      r.child.kill("SIGKILL");
      this.#reap(r.cg);
      this.#assertRunning(what);
      throw new TransportError(`could not start ${what} in sandbox ${this.id}: ${(e as Error).message}`, {
        cause: e,
        details: { id: this.id },
      });
    } finally {
      writer.releaseLock();
    }
    return { child: r.child, cg: r.cg };
  }

  #spares: Runner[] = [];
  #spawning: Promise<void> | null = null;
  /** Keeps one runner spawned ahead of need (in the background; it never keeps this process alive). */
  warm(): void {
    if (this.#spares.length > 0 || this.#spawning) return;
    this.#spawning = this.#spawnRunner("warm a runner")
      .then((r) => void this.#spares.push(r))
      .catch(() => {})
      .finally(() => this.#spawning = null);
  }

  async #spawnRunner(what: string): Promise<Runner> {
    const initPid = this.#assertRunning(what);
    const t = this.#tools;
    const cg = this.cgroups ? await this.#takeCgroup() : null;
    // Root becomes uid 0 of the sandbox's user namespace (its own host uid); anyone else keeps their
    // credentials, which that namespace maps to 0 (setgroups is denied there for them). -w without a
    // directory takes the init's cwd, inside the jail. Without cgroups the runner leads its own session,
    // so that a kill can reach the job's tree. The host shell splits no words (a guest IFS cannot
    // steer it) and unsets its own variables before entering.
    const script =
      `for c in "$MVM_CG1" "$MVM_CG2" "$MVM_CG3" "$MVM_CG4"; do [ -z "$c" ] || echo $$ > "$c/cgroup.procs" || exit 125; done; ` +
      `p=$MVM_INIT; r=$MVM_RUNNER; unset MVM_CG1 MVM_CG2 MVM_CG3 MVM_CG4 MVM_INIT MVM_RUNNER; ` +
      `exec ${t.nsenter} -t "$p" -U -m -p -n -i -u -C -r -w ${t.uid === 0 ? "" : "--preserve-credentials "}` +
      `-- /usr/bin/setpriv --no-new-privs --bounding-set=-all --inh-caps=-all -- ${
        this.cgroups ? "" : "/usr/bin/setsid -- "
      }/bin/sh -c "$r" mvm-runner`;
    try {
      const child = await runtime().spawn("/bin/sh", ["-c", script, "mvm-exec"], {
        clearEnv: true,
        env: {
          ...guestEnv(this.meta),
          ...cgroupEnv(cg ? [cg, ...this.cgroups!.join] : []),
          MVM_INIT: String(initPid),
          MVM_RUNNER: RUNNER_SH,
        },
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      });
      child.unref();
      const r: Runner = { child, cg, dead: false };
      child.status.then(() => r.dead = true, () => r.dead = true);
      return r;
    } catch (e) {
      if (cg) this.#reap(cg);
      throw e;
    }
  }

  #pool: string[] = [];
  #refill: Promise<void> | null = null;
  /** Takes the per-process groups the supervisor made at create. */
  adoptCgroups(names: string[]): void {
    if (this.cgroups) this.#pool.push(...names.map((n) => `${this.cgroups!.v2}/${n}`));
  }
  /** A fresh per-process cgroup; they are made eight at a time, ahead of need, to keep mkdir off the command's path. */
  async #takeCgroup(): Promise<string> {
    const refill = () =>
      this.#refill ??= makeCgroups(Array.from({ length: 8 }, () => `${this.cgroups!.v2}/${newCgroupName()}`))
        .then((dirs) => void this.#pool.push(...dirs))
        .finally(() => this.#refill = null);
    while (this.#pool.length === 0) await refill();
    const dir = this.#pool.shift()!;
    if (this.#pool.length < 3) refill().catch(() => {});
    return dir;
  }

  async #killTree(cg: string | null, child: ChildProcess, signal: string): Promise<void> {
    if (cg) await signalCgroup(cg, signal, child.pid).catch(() => {});
    else await signalSession(child.pid, signal).catch(() => {});
  }

  #toReap: string[] = [];
  #reaping: Promise<number> | null = null;
  /**
   * After a process exits: kill what it left behind and remove its group,
   * batched with other exits; resolves to the sandbox's OOM-kill count.
   */
  #reap(cg: string | null): Promise<number> {
    if (!cg) return Promise.resolve(0);
    this.#toReap.push(cg);
    return this.#reaping ??= new Promise<void>((r) => setTimeout(r, 0)).then(() => {
      const dirs = this.#toReap.splice(0);
      this.#reaping = null;
      return reapCgroups(dirs, this.cgroups?.memory).catch(() => 0);
    });
  }

  async start(argv: string[], opts: EngineStartOptions): Promise<EngineProcess> {
    const cwd = opts.cwd === undefined ? "/" : absolute(opts.cwd);
    if (opts.cwd !== undefined) await this.#agent("cwdcheck", [cwd], cwd);
    const started = performance.now();
    const { child, cg } = await this.exec({ kind: "command", argv, env: opts.env, cwd }, true, "start a process");
    appendEvent(this.dir, "process.started", { pid: child.pid, argv0: argv[0], argc: argv.length, cwd });
    let timedOut = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    if (opts.timeoutSeconds !== undefined) {
      timer = setTimeout(() => {
        timedOut = true;
        this.#killTree(cg, child, "SIGKILL");
      }, opts.timeoutSeconds * 1000);
    }
    const onAbort = () => this.#killTree(cg, child, "SIGKILL");
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    if (opts.signal?.aborted) onAbort();

    // A command's process tree ends with it. Its group is reaped off the critical path, unless the
    // streams are still held open by something it left behind, or the OOM count is needed.
    // Without cgroups nothing can find what it left behind, so its streams are let go instead.
    let reaped: Promise<number> | undefined;
    const reap = () => reaped ??= cg ? this.#reap(cg) : Promise.all([out.release(), err.release()]).then(() => 0);
    let streamsDone = false;
    const exited = child.status.then((s) => {
      setTimeout(() => streamsDone || reap(), 25);
      return s;
    });
    const out = this.#guestStream(child.stdout!, exited);
    const err = this.#guestStream(child.stderr!, exited);
    const status: Promise<ProcessStatus> = Promise.all([exited, out.done, err.done]).then(async ([s]) => {
      streamsDone = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onAbort);
      const killed = s.signal === "SIGKILL" || s.code === 137;
      const oom = killed ? await reap() : (reap(), 0);
      let exitCode = s.code;
      let signal = s.signal;
      const oomKilled = killed && !timedOut && oom > this.#oomSeen();
      if (oomKilled) this.#setOomSeen(oom);
      // nsenter reports a child killed by a signal by dying of it; a shell in between reports 128+n
      if (signal === null && exitCode === 137 && (timedOut || oomKilled)) {
        signal = "SIGKILL";
        exitCode = null;
      }
      const durationMs = Math.round(performance.now() - started);
      const auditId = appendEvent(this.dir, "process.exited", {
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
      stdin: child.stdin!,
      stdout: out.stream,
      stderr: err.stream,
      status,
      kill: (signal = "SIGTERM") => this.#killTree(cg, child, signal),
    };
  }

  #oomSeen(): number {
    return readPid(`${this.dir}/oom.seen`);
  }
  #setOomSeen(n: number) {
    try {
      writeFileSync(`${this.dir}/oom.seen`, String(n), { mode: 0o600 });
    } catch { /* sandbox gone */ }
  }

  /**
   * Wraps a child's output: a small queue (backpressure reaches the guest), and
   * a typed TRANSPORT error instead of a quiet end when the sandbox died under it.
   */
  #guestStream(
    src: ReadableStream<Uint8Array>,
    exited: Promise<unknown>,
  ): { stream: ReadableStream<Uint8Array>; done: Promise<void>; release: () => Promise<void> } {
    const reader = src.getReader();
    let finish!: () => void;
    const done = new Promise<void>((r) => finish = r);
    const stream = new ReadableStream<Uint8Array>({
      pull: async (c) => {
        try {
          const { value, done: end } = await reader.read();
          if (!end) {
            c.enqueue(value);
            return;
          }
          await exited;
          if (this.gone()) {
            c.error(
              new TransportError(`sandbox ${this.id} was destroyed while this stream was open; output may be incomplete`, {
                details: { id: this.id },
              }),
            );
          } else c.close();
        } catch (e) {
          c.error(new TransportError(`reading guest output failed: ${(e as Error).message}`, { cause: e }));
        }
        finish();
      },
      cancel: async (reason) => {
        await reader.cancel(reason).catch(() => {});
        finish();
      },
    }, OUTPUT_BUFFER);
    // ends the stream at what was read so far, even if something still holds the pipe open
    const release = () => reader.cancel().catch(() => {});
    return { stream, done, release };
  }

  /**
   * Copies `input` into the agent's stdin with backpressure. When the source
   * fails, the agent is killed while its stdin is still open, so it can never
   * mistake the end of a broken stream for the end of the data and commit half a
   * file; the source's error is returned. When the agent stops reading (it failed,
   * e.g. no space), the source is cancelled and the agent's own error speaks.
   */
  async #feed(input: ReadableStream<Uint8Array>, child: ChildProcess, cg: string | null): Promise<unknown> {
    const reader = input.getReader();
    const writer = child.stdin!.getWriter();
    for (;;) {
      let r: ReadableStreamReadResult<Uint8Array>;
      try {
        r = await reader.read();
      } catch (e) {
        // SIGKILL through cgroup.kill reaches every process of the job at once, forks included, so
        // nothing is left that could see the end of stdin and commit; the caller removes the temp file
        await this.#killTree(cg, child, "SIGKILL");
        child.kill("SIGKILL");
        await writer.abort(e).catch(() => {});
        return e ?? new Error("the data stream failed");
      }
      if (r.done) {
        await writer.close().catch(() => {});
        return undefined;
      }
      try {
        await writer.write(r.value);
      } catch {
        await reader.cancel().catch(() => {});
        await writer.abort().catch(() => {});
        return undefined;
      }
    }
  }

  /** Runs an agent op in the jail and returns its stdout; `input` feeds its stdin. */
  async #agent(op: string, args: string[], path: string, input?: ReadableStream<Uint8Array>): Promise<string> {
    const nonce = crypto.randomUUID().slice(0, 8);
    const { child, cg } = await this.exec({ kind: "agent", op, args, nonce }, input !== undefined, `files.${op}`);
    let inputError: unknown;
    const feeding = input ? this.#feed(input, child, cg).then((e) => void (inputError = e)) : Promise.resolve();
    const [stdout, stderr, s] = await Promise.all([collectText(child.stdout!), collectText(child.stderr!), child.status, feeding]);
    this.#reap(cg);
    if (inputError !== undefined && op === "write") {
      // the killed agent could not remove its temporary file: its name carries this write's nonce
      const dir = args[0].slice(0, args[0].lastIndexOf("/")) || "/";
      await this.#agent("cleanup", [dir, nonce], path).catch(() => {});
    }
    if (inputError !== undefined) {
      throw inputError instanceof Error
        ? inputError
        : new InvalidInputError(`files.${op}: the data stream failed: ${String(inputError)}`, { details: { path } });
    }
    if (s.code !== 0) {
      if (this.gone()) throw new NotFoundError(`sandbox ${this.id} was destroyed during files.${op}`, { details: { id: this.id } });
      throw agentError(stderr, op, path);
    }
    return stdout;
  }

  /**
   * Streams an agent op's stdout. The first chunk (or the end) is awaited
   * before returning, so a bad path rejects with its typed error instead of
   * handing back a stream that fails on first read.
   */
  async #streamOut(op: string, args: string[], path: string): Promise<ReadableStream<Uint8Array>> {
    const { child, cg } = await this.exec({ kind: "agent", op, args }, false, `files.${op}`);
    const stderrText = collectText(child.stderr!);
    const reader = child.stdout!.getReader();
    const finish = async (): Promise<SandboxError | null> => {
      const s = await child.status;
      this.#reap(cg);
      if (s.code === 0) return null;
      if (this.gone()) return new TransportError(`sandbox ${this.id} was destroyed during files.${op}`, { details: { id: this.id } });
      return agentError(await stderrText, op, path);
    };
    const first = await reader.read();
    if (first.done) {
      const e = await finish();
      if (e) throw e;
      return new ReadableStream<Uint8Array>({ start: (c) => c.close() });
    }
    let pending: Uint8Array | undefined = first.value;
    return new ReadableStream<Uint8Array>({
      pull: async (c) => {
        if (pending) {
          c.enqueue(pending);
          pending = undefined;
          return;
        }
        const r = await reader.read().catch(() => ({ done: true as const, value: undefined }));
        if (!r.done) return c.enqueue(r.value);
        const e = await finish();
        if (e) c.error(e);
        else c.close();
      },
      cancel: async () => {
        await reader.cancel().catch(() => {});
        await this.#killTree(cg, child, "SIGKILL");
        await child.status;
        this.#reap(cg);
      },
    }, OUTPUT_BUFFER);
  }

  readonly files: EngineFiles = {
    readStream: (path, range) =>
      this.#streamOut(
        "read",
        [absolute(path), String(range.offset ?? 0), range.length === undefined ? "-" : String(range.length)],
        absolute(path),
      ),
    readTar: (dir) => this.#streamOut("tarout", [absolute(dir)], absolute(dir)),
    writeTar: async (dir, tar) => {
      await this.#agent("tarin", [absolute(dir)], dir, tar);
      return appendEvent(this.dir, "files.writeTar", { path: absolute(dir) });
    },
    write: async (path, data, opts): Promise<WrittenFile> => {
      const p = absolute(path);
      const out = await this.#agent("write", [p, opts.mode.toString(8), opts.createParents ? "1" : "0"], p, data);
      const [info] = parseInfos(out);
      if (!info) throw new InternalError(`files.write ${JSON.stringify(p)}: no file info came back`);
      const auditId = appendEvent(this.dir, "files.write", { path: p, size: info.size });
      return { ...info, auditId };
    },
    list: async (path) => parseInfos(await this.#agent("list", [absolute(path)], path)),
    stat: async (path) => {
      const [info] = parseInfos(await this.#agent("stat", [absolute(path)], path));
      if (!info) throw new NotFoundError(`files.stat ${JSON.stringify(path)}: not found`);
      return info;
    },
    mkdir: async (path, opts) => {
      await this.#agent("mkdir", [absolute(path), opts.mode.toString(8), opts.parents ? "1" : "0"], path);
      return appendEvent(this.dir, "files.mkdir", { path: absolute(path) });
    },
    remove: async (path, opts) => {
      await this.#agent("remove", [absolute(path), opts.recursive ? "1" : "0"], path);
      return appendEvent(this.dir, "files.remove", { path: absolute(path), recursive: opts.recursive });
    },
    rename: async (from, to) => {
      await this.#agent("rename", [absolute(from), absolute(to)], from);
      return appendEvent(this.dir, "files.rename", { from: absolute(from), to: absolute(to) });
    },
  };

  logs(opts: { follow: boolean }): ReadableStream<LogEvent> {
    // An open descriptor keeps the log readable after the supervisor deletes the folder, so the
    // last events (destroy, TTL expiry) still reach a follower before its stream ends.
    let fd: number | undefined;
    let offset = 0;
    let seq = 0;
    let carry = "";
    const readNew = (): LogEvent[] => {
      if (fd === undefined) return [];
      const size = fstatSync(fd).size;
      if (size <= offset) return [];
      const buf = new Uint8Array(size - offset);
      const n = readSync(fd, buf, 0, buf.length, offset);
      offset += n;
      const lines = (carry + new TextDecoder().decode(buf.subarray(0, n))).split("\n");
      carry = lines.pop() ?? "";
      const evs: LogEvent[] = [];
      for (const l of lines) {
        if (!l) continue;
        try {
          evs.push({ seq: seq++, ...JSON.parse(l) });
        } catch { /* a torn line is skipped */ }
      }
      return evs;
    };
    const close = () => {
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
    };
    let timer: ReturnType<typeof setTimeout> | undefined;
    return new ReadableStream<LogEvent>({
      start: (c) => {
        try {
          fd = openSync(`${this.dir}/events.jsonl`, "r");
        } catch {
          c.error(new NotFoundError(`sandbox ${this.id} is gone; its log went with it`, { details: { id: this.id } }));
        }
      },
      pull: async (c) => {
        for (;;) {
          const gone = !existsSync(this.dir);
          const evs = readNew();
          if (evs.length) {
            for (const e of evs) c.enqueue(e);
            return;
          }
          if (!opts.follow || gone) {
            close();
            return c.close();
          }
          await new Promise((r) => timer = setTimeout(r, 100));
        }
      },
      cancel: () => {
        clearTimeout(timer);
        close();
      },
    });
  }

  async stop(): Promise<string> {
    const s = this.#state();
    if (s === "destroyed") throw new NotFoundError(`sandbox ${this.id} is gone`, { details: { id: this.id } });
    if (s === "stopped") return appendEvent(this.dir, "stop.noop");
    writeFileSync(`${this.dir}/stopped`, "", { mode: 0o600 });
    const id = appendEvent(this.dir, "stopped");
    await killInit(this.dir, this.cgroups);
    return id;
  }

  async destroy(): Promise<string> {
    const id = appendEvent(this.dir, "destroy.requested");
    await teardown(this.dir);
    return id;
  }

  detach(): Promise<string> {
    this.#assertRunning("detach");
    writeFileSync(`${this.dir}/detached`, "", { mode: 0o600 });
    return Promise.resolve(appendEvent(this.dir, "detached", { expiresAt: this.meta.expiresAt }));
  }

  disconnect(): Promise<void> {
    return Promise.resolve();
  }
}

/** Kills every process of the sandbox (its pid namespace dies with its init). */
async function killInit(dir: string, cgroups: SandboxCgroups | null): Promise<void> {
  // pid 1 first: the host-side nsenters are still there to reap their children, so the pid
  // namespace can finish dying; then whatever is left in the sandbox's groups
  const init = readPid(`${dir}/init.pid`);
  if (pidExists(init)) {
    try {
      process.kill(init, "SIGKILL");
    } catch { /* gone */ }
    for (let i = 0; i < 100 && pidExists(init); i++) await new Promise((r) => setTimeout(r, 10));
  }
  if (cgroups) await signalCgroup(cgroups.v2, "SIGKILL").catch(() => {});
}

/**
 * As root, each sandbox runs as its own unprivileged uid, which bubblewrap uses to reach the sandbox's
 * folder: every folder above it must be searchable by others.
 */
function assertSearchable(root: string): void {
  let p = root;
  while (p !== "/" && p !== "") {
    const mode = statSync(p).mode;
    if ((mode & 0o001) === 0) {
      throw new PermissionDeniedError(
        `the state directory ${root} cannot be reached by sandbox users: ${p} is not searchable by others (mode ${
          (mode & 0o777).toString(8)
        }). ` +
          `Run chmod o+x on it, or point MVM_STATE_DIR elsewhere (default /var/lib/mvm).`,
        { details: { path: p } },
      );
    }
    p = p.slice(0, p.lastIndexOf("/")) || "/";
  }
}

/** Tears a sandbox down through its supervisor, or by hand when the supervisor is gone. */
async function teardown(dir: string): Promise<void> {
  const sup = readPid(`${dir}/supervisor.pid`);
  if (pidExists(sup)) {
    try {
      process.kill(sup, "SIGTERM");
    } catch { /* exiting */ }
    const deadline = Date.now() + 10_000;
    while (existsSync(dir) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    if (!existsSync(dir)) return;
  }
  // no supervisor (it was killed, or creation failed half-way): clean up from here
  const cgroups = readSandboxCgroups(dir);
  await killInit(dir, cgroups);
  if (cgroups) await removeCgroups([cgroups.v2, ...cgroups.join]).catch(() => {});
  rmSync(dir, { recursive: true, force: true });
}

let lastCgroupGc = 0;

/**
 * Removes sandboxes whose supervisor died without cleaning up (e.g. SIGKILLed), and, in the
 * background and at most every 30 s, cgroups whose sandbox folder is gone.
 */
async function reapStale(root: string, layout: CgroupLayout | null): Promise<void> {
  if (layout && Date.now() - lastCgroupGc > 30_000) {
    lastCgroupGc = Date.now();
    collectOrphanCgroups(layout, root).catch(() => {});
  }
  let entries: string[] = [];
  try {
    entries = readdirSync(root);
  } catch {
    return;
  }
  for (const id of entries) {
    if (!ID_RE.test(id)) continue;
    const dir = `${root}/${id}`;
    const sup = readPid(`${dir}/supervisor.pid`);
    if (sup === 0) {
      // being created: leave it alone for a while
      try {
        if (Date.now() - statSync(dir).mtimeMs < 60_000) continue;
      } catch {
        continue;
      }
    } else if (pidExists(sup)) continue;
    await teardown(dir).catch(() => {});
  }
}

function capabilities(): Capabilities {
  return {
    commands: true,
    files: true,
    logs: true,
    detach: true,
    pause: false,
    snapshot: false,
    fork: false,
    limits: { cpu: true, memory: true, pids: true },
    network: "none",
  };
}

/** The local engine. @example `await localEngine.create(spec)` */
export const localEngine: Engine = {
  name: "local",
  capabilities,
  async create(spec: SandboxSpec): Promise<EngineSandbox> {
    const t = await preflight();
    const image = resolveImage(spec);
    if (spec.network.rules.length > 0) {
      throw new UnsupportedError(
        `the local engine has no egress yet: sandboxes get loopback only, so the allowlist (${
          spec.network.hosts.join(", ")
        }) cannot be honoured. Use NetworkPolicy.denyByDefault() alone, or the mvmctl engine.`,
      );
    }
    const layout = t.layout;
    const limits = { cpu: spec.cpu, memoryMb: spec.memoryMb, pidsLimit: spec.pidsLimit ?? (layout ? DEFAULT_PIDS : undefined) };
    if (!layout && (spec.cpu || spec.memoryMb || spec.pidsLimit)) {
      throw new UnsupportedError(
        "cpu, memoryMb and pidsLimit need writable cgroups (run as root, or with a delegated cgroup); none are available here",
      );
    }
    const root = t.root;
    const isRoot = t.uid === 0;
    try {
      mkdirSync(root, { recursive: true, mode: isRoot ? 0o711 : 0o700 });
    } catch (e) {
      throw new PermissionDeniedError(
        `cannot create the state directory ${root}: ${(e as Error).message}; set MVM_STATE_DIR to a writable folder`,
        { cause: e },
      );
    }
    if (isRoot) assertSearchable(root);
    await reapStale(root, t.layout);
    const id = randomId();
    const dir = `${root}/${id}`;
    const now = new Date();
    const sandboxUid = isRoot ? 2_000_000_000 + (crypto.getRandomValues(new Uint32Array(1))[0] % 16_000_000) : t.uid;
    const tmpBytes = (spec.tmpSizeMb ?? DEFAULT_TMP_MB) * 1024 * 1024;
    const pool = Array.from({ length: 8 }, newCgroupName);
    const env: Record<string, string> = { ...spec.env };
    for (const [k, ref] of Object.entries(spec.secrets)) env[k] = ref.placeholder;
    const meta: Meta = {
      v: 1,
      id,
      image,
      template: spec.template,
      name: spec.name,
      workloadId: spec.workloadId,
      tags: spec.tags,
      createdAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + spec.ttlSeconds * 1000).toISOString(),
      ttlSeconds: spec.ttlSeconds,
      limits,
      env,
      ownerPid: hostPid(),
      sandboxUid,
    };
    try {
      mkdirSync(dir, { mode: isRoot ? 0o711 : 0o700 });
      mkdirSync(`${dir}/root/root`, { recursive: true, mode: 0o700 });
      mkdirSync(`${dir}/root/app`, { mode: 0o755 });
      if (isRoot) {
        for (const p of ["root", "root/root", "root/app"]) chownSync(`${dir}/${p}`, sandboxUid, sandboxUid);
      }
      writeFileSync(`${dir}/meta.json`, JSON.stringify(meta), { mode: 0o600 });
      writeFileSync(`${dir}/events.jsonl`, "", { mode: 0o600 });
      appendEvent(dir, "created", { image, ttlSeconds: spec.ttlSeconds, limits, tags: spec.tags });
      const bwrap = [
        ...(isRoot ? [t.setpriv, `--reuid=${sandboxUid}`, `--regid=${sandboxUid}`, "--clear-groups", "--"] : []),
        t.bwrap,
        "--unshare-user",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--uid",
        "0",
        "--gid",
        "0",
        "--hostname",
        id,
        "--die-with-parent",
        "--new-session",
        "--bind",
        `${dir}/root`,
        "/",
        "--ro-bind",
        "/usr",
        "/usr",
        "--ro-bind",
        "/etc",
        "/etc",
        ...rootBindArgs(),
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        String(tmpBytes),
        "--tmpfs",
        "/tmp",
        "--info-fd",
        "3",
        "--",
        "/bin/sh",
        "-c",
        "echo ready >&4 && exec /usr/bin/sleep infinity 4>&- 2>/dev/null",
      ];
      const sup = await runtime().spawn(t.setsid, [
        "/bin/sh",
        "-c",
        SUPERVISOR_SH,
        "mvm-supervisor",
        dir,
        String(hostPid()),
        String(spec.ttlSeconds),
        ...bwrap,
      ], {
        clearEnv: true,
        env: { PATH: GUEST_PATH, ...(layout ? supervisorCgroupEnv(layout, id, limits, pool) : {}) },
        stdin: "null",
        stdout: "piped",
        stderr: "null",
      });
      const line = await readReadyLine(sup);
      sup.unref();
      if (!line.startsWith("ready ")) {
        throw new TransportError(`bubblewrap failed to start the sandbox: ${line.replace(/^error /, "").trim() || "no reason given"}`, {
          details: { id },
        });
      }
      const sb = new LocalSandbox(id, dir, meta, t);
      sb.adoptCgroups(pool);
      sb.warm();
      return sb;
    } catch (e) {
      await teardown(dir).catch(() => {});
      throw e;
    }
  },
  async connect(id: string): Promise<EngineSandbox> {
    if (!ID_RE.test(id)) throw new NotFoundError(`no sandbox ${JSON.stringify(id)}: ids look like sbx-xxxxxxxxxxxx`, { details: { id } });
    const t = await preflight();
    const dir = `${t.root}/${id}`;
    const meta = readMeta(dir);
    if (!meta || !pidExists(readPid(`${dir}/supervisor.pid`)) || existsSync(`${dir}/destroying`)) {
      throw new NotFoundError(`no live sandbox ${id} (destroyed, expired, or never created here)`, { details: { id } });
    }
    return new LocalSandbox(id, dir, meta, t);
  },
  async list(filter): Promise<SandboxInfo[]> {
    const t = await preflight();
    await reapStale(t.root, t.layout);
    const out: SandboxInfo[] = [];
    let entries: string[] = [];
    try {
      entries = readdirSync(t.root);
    } catch {
      return out;
    }
    for (const id of entries.sort()) {
      if (!ID_RE.test(id)) continue;
      const sb = await localEngine.connect(id).catch(() => null);
      if (!sb) continue;
      const info = await sb.info();
      if (filter.tags && Object.entries(filter.tags).some(([k, v]) => info.tags[k] !== v)) continue;
      out.push(info);
    }
    return out;
  },
};

async function readReadyLine(child: ChildProcess): Promise<string> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, rej) =>
    timer = setTimeout(() => {
      child.kill("SIGTERM");
      rej(new TimeoutError(`the sandbox did not start within ${READY_TIMEOUT_MS / 1000} s`));
    }, READY_TIMEOUT_MS)
  );
  try {
    const text = await Promise.race([collectText(child.stdout!), timeout]);
    return text.split("\n").find((l) => l.startsWith("ready ") || l.startsWith("error ")) ?? text.trim();
  } finally {
    clearTimeout(timer);
  }
}
