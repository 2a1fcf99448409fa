/**
 * The public data types of the SDK: options, results, states, file info and
 * log events. All of them are plain JSON-serialisable data.
 *
 * @example
 * ```ts
 * import type { CommandResult, SandboxState } from "./mod.ts";
 * const ok = (r: CommandResult) => r.exitCode === 0;
 * ```
 * @module
 */
import type { NetworkPolicy, SecretRef } from "./policy.ts";

/** Lifecycle states, always explicit. */
export type SandboxState = "creating" | "running" | "paused" | "sleeping" | "restoring" | "stopped" | "destroyed";

/** Engine names. */
export type EngineName = "local" | "mvmctl" | "record";

/** Options of {@linkcode Sandbox.create}. */
export interface CreateOptions {
  /** Image: `"host"` (default), or an upstream template name such as `"python-3.12"`. */
  image?: string;
  /** Upstream template name (same as passing it as the first argument). */
  template?: string;
  /** Workload id for upstream's recording and audit. */
  workloadId?: string;
  /** Which engine; `MVM_SDK_MODE=record` overrides it. Default `"local"`. */
  engine?: EngineName;
  /** Egress policy. Default: deny all. */
  network?: NetworkPolicy;
  /** Secrets by reference, exposed to guest processes as env placeholders. */
  secrets?: Record<string, SecretRef>;
  /** Environment of every guest process. */
  env?: Record<string, string>;
  /** Host paths to include (record mode; passed to upstream). */
  include?: string[];
  /** CPU cores (may be fractional). */
  cpu?: number;
  /** Memory limit in MiB. */
  memoryMb?: number;
  /** Root filesystem size in MiB (record mode / microVM engines). */
  rootfsSizeMb?: number;
  /** Most processes the sandbox may hold at once. Default 512 on the local engine. */
  pidsLimit?: number;
  /** Size of the sandbox's `/tmp` (a tmpfs, in memory) in MiB. Default 512 on the local engine. */
  tmpSizeMb?: number;
  /** Lease: `"30m"`, `"1h"`, `"3600s"` or seconds. Default 30 min. */
  ttl?: string | number;
  /** Upstream's spelling of `ttl`. */
  ttlSeconds?: number;
  /** Free-form labels for {@linkcode Sandbox.list}. */
  tags?: Record<string, string>;
  /** Human-readable name. */
  name?: string;
}

/** Options of `commands.run` and `commands.start`. */
export interface CommandOptions {
  /** Working directory inside the sandbox (default `/`). */
  cwd?: string;
  /** Extra environment. Loader hooks (`LD_*`, `NODE_OPTIONS` …) are refused. */
  env?: Record<string, string>;
  /** Standard input: text, bytes or a stream. `start` also offers `stdin` as a WritableStream. */
  stdin?: string | Uint8Array | ReadableStream<Uint8Array>;
  /** Kill the whole process tree after this many seconds and report `timedOut`. */
  timeoutSeconds?: number;
  /** Aborting kills the whole process tree. */
  signal?: AbortSignal;
  /** `run` only: throw {@linkcode CommandExitError} on a non-zero exit. */
  check?: boolean;
}

/** How a process ended. */
export interface ProcessStatus {
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  oomKilled: boolean;
  durationMs: number;
  auditId: string;
}

/** What `commands.run` returns. */
export interface CommandResult extends ProcessStatus {
  stdout: string;
  stderr: string;
}

/** What `info()` and `Sandbox.list()` report. */
export interface SandboxInfo {
  id: string;
  state: SandboxState;
  engine: EngineName;
  image: string;
  name?: string;
  workloadId?: string;
  tags: Record<string, string>;
  createdAt: string;
  expiresAt: string;
  ttlSeconds: number;
  detached: boolean;
  limits: { cpu?: number; memoryMb?: number; pidsLimit?: number };
}

/** A file's metadata. */
export interface FileInfo {
  path: string;
  name: string;
  type: "file" | "dir" | "symlink" | "other";
  size: number;
  mode: number;
  mtime: string;
}

/** One structured log event, kept by the host side. */
export interface LogEvent {
  /** Audit id of this event (`<sandbox>:<seq>`). */
  id: string;
  seq: number;
  time: string;
  type: string;
  [key: string]: unknown;
}

/** What the engines report they can do. */
export interface Capabilities {
  commands: boolean;
  files: boolean;
  logs: boolean;
  detach: boolean;
  pause: boolean;
  snapshot: boolean;
  fork: boolean;
  limits: { cpu: boolean; memory: boolean; pids: boolean };
  network: "none" | "allowlist";
}
