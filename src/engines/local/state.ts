/**
 * The local engine's state on the host. One base folder (`$MVM_STATE_DIR`, default `/var/lib/mvm`
 * for root, else `$XDG_STATE_HOME/mvm` or `~/.local/state/mvm`) holds `sandboxes/<id>/` (one
 * {@linkcode SandboxDir} per sandbox) and `helpers/` (the execute-only tools, see `helpers.ts`).
 * The engine trusts only folders it owns that nobody else can write, and writes every file 0600.
 *
 * @example Where state lives
 * ```ts
 * import { stateBase } from "./state.ts";
 * console.log(stateBase(0)); // "/var/lib/mvm" when root and MVM_STATE_DIR is unset
 * ```
 * @module
 */
import { createHash } from "node:crypto";
import {
  appendFileSync,
  chmodSync,
  closeSync,
  constants,
  existsSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { AUDIT_ROTATE_BYTES, AuditLog, newAuditId } from "../../audit.ts";
import { PermissionDeniedError } from "../../errors.ts";
import type { ForkInfo, RestoreInfo } from "../../snapshot.ts";
import { getEnv, permissionRefusal } from "../../runtime/mod.ts";
import { redact, redactJson } from "../../redact.ts";
import { withLock } from "../../lock.ts";

/** The base folder of all local state. @example `stateBase(0) // "/var/lib/mvm"` */
export function stateBase(uid: number): string {
  const explicit = getEnv("MVM_STATE_DIR");
  if (explicit) return explicit.replace(/\/+$/, "") || "/";
  if (uid === 0) return "/var/lib/mvm";
  const xdg = getEnv("XDG_STATE_HOME") || `${getEnv("HOME") ?? "/tmp"}/.local/state`;
  return `${xdg}/mvm`;
}

/** A short tag naming a state root, so cgroups of different state roots never mix. @example `rootTag("/var/lib/mvm/sandboxes")` */
export function rootTag(root: string): string {
  return "r" + createHash("sha256").update(root).digest("hex").slice(0, 10);
}

/**
 * Makes (or checks) a folder the engine will trust: owned by `uid`, not a symlink, writable by
 * nobody else; its mode is set exactly, whatever the umask. Throws PERMISSION_DENIED naming the
 * path and the fix otherwise.
 *
 * @example `trustedDir("/var/lib/mvm", 0, 0o711)`
 */
export function trustedDir(path: string, uid: number, mode: number): void {
  try {
    mkdirSync(path, { recursive: true, mode });
  } catch (e) {
    const refused = permissionRefusal(e, `--allow-write=${path}`, `creating the state directory ${path}`);
    if (refused) throw refused;
    throw new PermissionDeniedError(
      `cannot create the state directory ${path}: ${(e as Error).message}; set MVM_STATE_DIR to a writable folder`,
      {
        cause: e,
        details: { path },
      },
    );
  }
  const st = lstatSync(path);
  if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o022) !== 0) {
    throw new PermissionDeniedError(
      `refusing the state directory ${path}: it must be a directory owned by uid ${uid} and writable by nobody else ` +
        `(it is ${st.isDirectory() ? "a directory" : "not a directory"} owned by uid ${st.uid}, mode ${(st.mode & 0o777).toString(8)}). ` +
        `Fix its owner and mode (chown ${uid} ${path}; chmod go-w ${path}) or point MVM_STATE_DIR elsewhere.`,
      { details: { path } },
    );
  }
  if ((st.mode & 0o777) !== mode) chmodSync(path, mode);
}

/** The size of a sandbox's `/tmp` (a tmpfs) when `tmpSizeMb` is not given, in MiB. */
export const DEFAULT_TMP_MB = 512;

/** What the engine stores about a sandbox (never a secret value). */
export interface Meta {
  v: 1;
  id: string;
  image: string;
  template?: string | undefined;
  name?: string | undefined;
  workloadId: string;
  tags: Record<string, string>;
  createdAt: string;
  expiresAt: string;
  ttlSeconds: number;
  limits: { cpu?: number | undefined; memoryMb?: number | undefined; pidsLimit?: number | undefined; tmpSizeMb?: number | undefined };
  /** Environment of every guest process; secrets appear only as placeholders. */
  env: Record<string, string>;
  ownerPid: number;
  sandboxUid: number;
  /** The snapshot it was restored from, and how. */
  restoredFrom?: RestoreInfo | undefined;
  /** The sandbox it was forked from, and how. */
  forkedFrom?: ForkInfo | undefined;
}

/** A process the supervisor reported, with its start time (so a recycled pid is never taken for it). */
export interface ProcId {
  pid: number;
  start: string;
}

export { newAuditId };

const chains = new Map<string, AuditLog>();
/**
 * The audit chain of a state root (`<base>/audit`, beside `<base>/sandboxes`): one per root and
 * process. Supervisors leave their events in its spool (`<base>/audit/spool`), which it takes in.
 * @example `auditLog("/var/lib/mvm/sandboxes").append("created")`
 */
export function auditLog(root: string, uid?: number): AuditLog {
  let log = chains.get(root);
  if (!log) {
    // the chain is trusted like the state root it sits beside: owned by the same uid, 0700 (an engine
    // with no sandbox folders here, mvmctl, names the uid)
    trustedDir(auditDir(root), uid ?? lstatSync(root).uid, 0o700);
    chains.set(root, log = new AuditLog(auditDir(root), rootTag(root), AUDIT_ROTATE_BYTES, `${auditDir(root)}/spool`));
  }
  return log;
}
/** The audit folder of a state root. @example `auditDir("/var/lib/mvm/sandboxes") // "/var/lib/mvm/audit"` */
export function auditDir(root: string): string {
  return `${root.replace(/\/sandboxes$/, "")}/audit`;
}

/**
 * One sandbox's folder and every name in it. Markers: `destroying`, `stopped`, `detached`, `paused`; the
 * supervisor writes `cgroups`, `pids` and `bwrap.err`; the SDK writes `meta.json`, `events.jsonl`,
 * `oom.seen`; `root/` is the sandbox's writable `/`.
 *
 * @example
 * ```ts
 * import { SandboxDir } from "./state.ts";
 * const d = new SandboxDir("/var/lib/mvm/sandboxes", "sbx-000000000000");
 * console.log(d.file("meta.json"));
 * ```
 */
export class SandboxDir {
  /** The folder's path. */
  readonly path: string;
  constructor(readonly root: string, readonly id: string) {
    this.path = `${root}/${id}`;
  }
  /** Path of a file in the folder. */
  file(name: StateFile | "cgroups" | "pids" | "bwrap.err" | "root" | "ctl" | "alive" | "jail.alive" | "runners" | Marker): string {
    return `${this.path}/${name}`;
  }
  /** Whether the folder is still there. */
  exists(): boolean {
    return existsSync(this.path);
  }
  /** Whether the folder is one this engine made: owned by `uid`, writable by nobody else. */
  trusted(uid: number): boolean {
    try {
      const st = lstatSync(this.path);
      return st.isDirectory() && st.uid === uid && (st.mode & 0o022) === 0;
    } catch {
      return false;
    }
  }
  has(marker: Marker): boolean {
    return existsSync(this.file(marker));
  }
  mark(marker: Marker): void {
    writeFileSync(this.file(marker), "", { mode: 0o600 });
  }
  unmark(marker: Marker): void {
    rmSync(this.file(marker), { force: true });
  }
  /** Writes a state file, 0600 whatever the umask. */
  write(name: StateFile, data: string): void {
    writeFileSync(this.file(name), redact(data), { mode: 0o600 });
  }
  /** Replaces a state file at once: readers see the old or the new content, never a part. */
  replace(name: StateFile, data: string): void {
    const tmp = `${this.file(name)}.${crypto.randomUUID().slice(0, 8)}.tmp`;
    writeFileSync(tmp, redact(data), { mode: 0o600 });
    renameSync(tmp, this.file(name));
  }
  /**
   * Wakes the supervisor's watch (a byte on its control fifo) so it reads the lease again. False when
   * nobody reads the fifo: the supervisor is gone.
   */
  poke(): boolean {
    return fifoHasReader(this.file("ctl"), "t");
  }
  /**
   * Whether the sandbox's supervisor still holds its lease: it keeps the `alive` fifo open for reading
   * while it lives, so this asks the kernel, not a pid that may have been recycled.
   */
  supervised(): boolean {
    return fifoHasReader(this.file("alive"));
  }
  /**
   * Whether the sandbox's jail (bwrap, and so its init) still runs: its launcher alone holds the
   * `jail.alive` fifo open for reading. A fifo, not a signal to a pid: no recycled pid is mistaken
   * for it, and Deno lets it be asked with a scoped `--allow-write` (signalling needs all of `--allow-run`).
   */
  jailed(): boolean {
    return fifoHasReader(this.file("jail.alive"));
  }
  /**
   * The secrets the guest gets as themselves (`exposeToGuest`), kept apart from meta.json (0600, never
   * redacted: the caller chose to hand them to the guest); `{}` for most sandboxes.
   */
  readExposed(): Record<string, string> {
    try {
      return JSON.parse(readFileSync(this.file("exposed.json"), "utf8"));
    } catch {
      return {};
    }
  }
  writeExposed(env: Record<string, string>): void {
    writeFileSync(this.file("exposed.json"), JSON.stringify(env), { mode: 0o600 });
  }
  /**
   * Changes `meta.json` under the folder's lock (read, change, replace), so two clients that set the
   * tags and the TTL of one sandbox at the same instant both keep their change. Returns the new meta.
   */
  updateMeta(change: (meta: Meta) => Meta, fallback: Meta): Meta {
    return withLock(this.path, () => {
      const meta = change(this.readMeta() ?? fallback);
      this.replace("meta.json", JSON.stringify(meta));
      return meta;
    });
  }
  readMeta(): Meta | null {
    try {
      return JSON.parse(readFileSync(this.file("meta.json"), "utf8")) as Meta;
    } catch {
      return null;
    }
  }
  /** The processes the supervisor reported (`init`, `reaper`, `supervisor`), or {} before it did. */
  readPids(): Partial<Record<"init" | "reaper" | "supervisor", ProcId>> {
    const out: Partial<Record<"init" | "reaper" | "supervisor", ProcId>> = {};
    try {
      for (const line of readFileSync(this.file("pids"), "utf8").split("\n")) {
        const [k, pid, start] = line.split(" ");
        if ((k === "init" || k === "reaper" || k === "supervisor") && Number(pid) > 0 && start) out[k] = { pid: Number(pid), start };
      }
    } catch { /* not written yet, or gone */ }
    return out;
  }
  readNumber(name: "oom.seen"): number {
    try {
      return Number(readFileSync(this.file(name), "utf8").trim()) || 0;
    } catch {
      return 0;
    }
  }
  /**
   * Appends one event to the log and to the state root's audit chain, under one id (the audit id of
   * whatever it records). Lines are small, so O_APPEND keeps concurrent writers from interleaving.
   */
  appendEvent(type: string, fields: Record<string, unknown> = {}): string {
    const id = this.audit(type, fields);
    if (!this.exists()) return id;
    try {
      appendFileSync(
        this.file("events.jsonl"),
        JSON.stringify(redactJson({ id, time: new Date().toISOString(), type, source: "sdk", ...fields })) + "\n",
        {
          mode: 0o600,
        },
      );
    } catch { /* the sandbox went away; the id is still unique */ }
    return id;
  }
  /** Appends an entry to the state root's audit chain only (operations that read state); returns its id. */
  audit(type: string, fields: Record<string, unknown> = {}): string {
    return auditLog(this.root).append(type, fields, { sandbox: this.id, source: "sdk" });
  }
}

/**
 * Whether a process holds the fifo at `path` open for reading (and, with `byte`, writes it to the fifo):
 * the open for writing fails at once (ENXIO, O_NONBLOCK) when none does. How the SDK asks whether a
 * supervisor, a jail or a keeper still lives, without signalling a pid.
 *
 * @example `fifoHasReader(dir.file("alive"))`
 */
export function fifoHasReader(path: string, byte = ""): boolean {
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
  } catch (e) {
    // under Deno, a refusal is the caller's missing permission, not a dead process
    const refused = permissionRefusal(e, `--allow-write=${path}`, `asking whether a helper lives (${path})`);
    if (refused) throw refused;
    return false;
  }
  try {
    if (byte) writeSync(fd, byte);
    return true;
  } catch {
    return false;
  } finally {
    closeSync(fd);
  }
}

/** Files the SDK writes. */
export type StateFile =
  | "meta.json"
  | "events.jsonl"
  | "oom.seen"
  | "bwrap.args"
  | "egress.conf"
  | "ttl"
  | "secrets.json"
  | "ca.key"
  | "ca.crt"
  | "ca-bundle.crt"
  | "upstream-ca.crt"
  | "exposed.json";
/** Marker files. */
export type Marker = "destroying" | "stopped" | "stopped.done" | "detached" | "paused" | "pooled";
