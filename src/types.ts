/**
 * The public data types of the SDK: options, results, states, file info and
 * log events. All of them are plain JSON-serialisable data.
 *
 * @example Results are plain data
 * ```ts
 * import assert from "node:assert/strict";
 * import { type CommandResult, Sandbox } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * const r: CommandResult = await sb.commands.run(["echo", "hi"]);
 * assert.deepEqual(JSON.parse(JSON.stringify(r)), r);
 * ```
 * @module
 */
import type { NetworkPolicy, SecretRef } from "./policy.ts";
import type { ForkInfo, RestoreInfo, SnapshotInfo } from "./snapshot.ts";

/**
 * Lifecycle states, always explicit. The local engine reports `running`,
 * `paused`, `stopped` and `destroyed`; `sleeping` (memory on disk) and
 * `restoring` (memory coming back) are reached only through
 * `pause({ toDisk: true })` on an engine with a working memory checkpoint
 * (`capabilities().pauseToDisk`): never on the local engine, nor on a host
 * without a checkpoint tool, where that pause is an `UnsupportedError`.
 *
 * @example A fresh sandbox runs
 * ```ts
 * import assert from "node:assert/strict";
 * import { Sandbox, type SandboxState } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * const state: SandboxState = sb.state;
 * assert.equal(state, "running");
 * ```
 */
export type SandboxState = "creating" | "running" | "paused" | "sleeping" | "restoring" | "stopped" | "destroyed";

/**
 * Engine names: `local` (bubblewrap, the default), `record` (records instead
 * of executing) and `mvmctl` (microVMs, not built yet).
 *
 * @example The engine a sandbox runs on
 * ```ts
 * import assert from "node:assert/strict";
 * import { type EngineName, Sandbox } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create({ engine: "local" });
 * const engine: EngineName = sb.engine;
 * assert.equal(engine, "local");
 * ```
 */
export type EngineName = "local" | "mvmctl" | "record";

/**
 * Options of {@linkcode Sandbox.create}.
 *
 * @example Limits, a lease and labels
 * ```ts
 * import assert from "node:assert/strict";
 * import { type CreateOptions, Sandbox } from "@mvm/sdk";
 *
 * const options: CreateOptions = { memoryMb: 256, pidsLimit: 256, ttl: "10m", tags: { team: "agents" } };
 * await using sb = await Sandbox.create(options);
 * const info = await sb.info();
 * assert.equal(info.ttlSeconds, 600);
 * assert.deepEqual(info.tags, { team: "agents" });
 * ```
 */
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
  /**
   * Environment of every guest process. Each `NAME=value` may be at most
   * 131,071 bytes (the kernel's MAX_ARG_STRLEN less its NUL); all of it, with a
   * command's own env and argv, at most 1 MiB.
   */
  env?: Record<string, string>;
  /** Host paths to include (record mode; passed to upstream). */
  include?: string[];
  /** CPU cores (may be fractional), 0.01 to 1024. */
  cpu?: number;
  /** Memory limit in MiB, 16 (a shell and the SDK's helpers run) to 1,048,576 (1 TiB). */
  memoryMb?: number;
  /** Root filesystem size in whole MiB, 1 to 1,048,576 (record mode / microVM engines). */
  rootfsSizeMb?: number;
  /** Most processes the sandbox may hold at once, 16 to 4,194,304. Default 1024 on the local engine (when it has cgroups). */
  pidsLimit?: number;
  /** Size of the sandbox's `/tmp` (a tmpfs, in memory) in whole MiB, 1 to 1,048,576. Default 512 on the local engine. */
  tmpSizeMb?: number;
  /** Lease: `"30m"`, `"1h"`, `"3600s"` or seconds, at most 30 days. Default 30 min. */
  ttl?: string | number;
  /** Upstream's spelling of `ttl`. */
  ttlSeconds?: number;
  /** Free-form labels for {@linkcode Sandbox.list}. */
  tags?: Record<string, string>;
  /** Human-readable name. */
  name?: string;
  /**
   * Aborting it stops waiting for the sandbox: `create` rejects with the
   * signal's reason once whatever was made is destroyed again.
   */
  signal?: AbortSignal;
  /** Most seconds to wait for the sandbox; past it, `create` destroys what was made and throws `TimeoutError`. */
  timeoutSeconds?: number;
  /**
   * Start from a sealed snapshot (its id or its {@linkcode SnapshotInfo}): the new sandbox's `/` holds
   * the snapshot's files. Its seal, epoch and digests are checked first (`IntegrityError` when they do
   * not match); see `restoredFrom` on the sandbox.
   */
  snapshot?: string | SnapshotInfo;
  /** `false` restores a snapshot without checking it (recorded as `snapshot.unverified`). Default true. */
  verify?: boolean;
}

/**
 * Options of `commands.run` and `commands.start`.
 *
 * @example Working directory, environment and input
 * ```ts
 * import assert from "node:assert/strict";
 * import { type CommandOptions, Sandbox } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * const options: CommandOptions = { cwd: "/tmp", env: { GREETING: "hi" }, stdin: "there", timeoutSeconds: 10 };
 * const r = await sb.commands.run(["sh", "-c", 'echo "$GREETING $(cat) from $(pwd)"'], options);
 * assert.equal(r.stdout, "hi there from /tmp\n");
 * ```
 */
export interface CommandOptions {
  /** Working directory inside the sandbox (default `/`). */
  cwd?: string;
  /** Extra environment. Loader hooks (`LD_*`, `NODE_OPTIONS` …) are refused. */
  env?: Record<string, string>;
  /**
   * Standard input: text, bytes or a stream. `start` also offers `stdin` as a
   * WritableStream. A stream that fails, or carries a chunk that is not bytes,
   * kills the process before its stdin ends and rejects its `status` (and
   * `run`) with that error.
   */
  stdin?: string | Uint8Array | ReadableStream<Uint8Array>;
  /** Kill the whole process tree after this many seconds (more than 0, at most 2,147,483, about 24.8 days) and report `timedOut`. */
  timeoutSeconds?: number;
  /** Aborting kills the whole process tree. */
  signal?: AbortSignal;
  /** `run` only: throw {@linkcode CommandExitError} on a non-zero exit. */
  check?: boolean;
  /**
   * The command is one string, a shell command line, run by `/bin/sh -c` in
   * the sandbox (`run("echo $HOME", { shell: true })`). A string without it is
   * refused: nothing is handed to a shell unless asked.
   */
  shell?: boolean;
  /** Resume the sandbox first if it is paused (otherwise a paused sandbox throws `ConflictError`). */
  resume?: boolean;
  /**
   * `start` only: hand the command to a keeper of its own, so it outlives this process (until it
   * ends or the sandbox goes); `commands.list()` lists it and `commands.connect(id)` re-attaches
   * to it from any handle or process. Its output is spooled (bounded) in the sandbox's state
   * folder. Disposing its handle lets it run; `kill()` stops it. Not with `signal`.
   */
  detached?: boolean;
  /**
   * `start` only: run the command on a pseudo-terminal made inside the sandbox, as its controlling
   * terminal (`isatty` is true for its stdin, stdout and stderr). Its stderr is merged into
   * `stdout` as on any terminal (`stderr` ends empty); `stdin` takes keystrokes (`"\x03"`, Ctrl-C,
   * interrupts the foreground program); closing `stdin` sends the terminal's end-of-file character
   * (Ctrl-D) when it is in line mode; `resize(cols, rows)` changes its size. `TERM` is
   * `xterm-256color` unless `env` sets it. Engines whose `capabilities().pty` is false refuse it
   * (`UnsupportedError`); not with `detached`.
   */
  pty?: boolean;
  /** With `pty`: the terminal's width in columns (default 80, 1 to 65535). */
  cols?: number;
  /** With `pty`: the terminal's height in rows (default 24, 1 to 65535). */
  rows?: number;
}

/**
 * A detached command as `commands.list()` reports it. Only the program's name and the argument
 * count are kept (arguments may hold secrets).
 *
 * @example Listing and re-attaching
 * ```ts
 * import assert from "node:assert/strict";
 * import { type CommandInfo, Sandbox } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * const p = await sb.commands.start(["sleep", "30"], { detached: true });
 * const [info]: CommandInfo[] = await sb.commands.list();
 * assert.equal(info.id, p.id);
 * assert.equal(info.running, true);
 * await (await sb.commands.connect(info.id)).kill("SIGKILL");
 * ```
 */
export interface CommandInfo {
  /** The command's id (`cmd-` and 12 of `[a-z0-9]`), for `commands.connect`. */
  id: string;
  /** The program it runs (`argv[0]`). */
  argv0: string;
  /** How many arguments it was given, the program included. */
  argc: number;
  /** When it started (ISO 8601). */
  startedAt: string;
  /** Whether it still runs. */
  running: boolean;
  /** How it ended, once it did. */
  status?: ProcessStatus;
}

/**
 * How a process ended. `exitCode` is never null: a process a signal ended
 * reports 128 + the signal's number (137 for SIGKILL), as shells and
 * `Deno.Command` do, with the signal's name in `signal`.
 *
 * @example A process killed by a signal
 * ```ts
 * import assert from "node:assert/strict";
 * import { type ProcessStatus, Sandbox } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * const p = await sb.commands.start(["sleep", "30"]);
 * await p.kill("SIGKILL");
 * const status: ProcessStatus = await p.status;
 * assert.equal(status.exitCode, 137);
 * assert.equal(status.signal, "SIGKILL");
 * ```
 */
export interface ProcessStatus {
  /** The exit code; 128 + the signal's number when a signal ended the process (see `signal`). */
  exitCode: number;
  /** The signal that ended the process (e.g. `"SIGKILL"`), or null when it exited. */
  signal: string | null;
  /** Whether `timeoutSeconds` ran out and the process tree was killed. */
  timedOut: boolean;
  /** Whether the process was killed for going over `memoryMb`. */
  oomKilled: boolean;
  /** Wall-clock time from start to exit, in milliseconds. */
  durationMs: number;
  /** The id of the log event and of the audit chain entry that recorded the exit (see {@linkcode LogEvent.id}). */
  auditId: string;
}

/**
 * What `commands.run` returns: the process's status and its whole output.
 *
 * @example Output and exit code
 * ```ts
 * import assert from "node:assert/strict";
 * import { type CommandResult, Sandbox } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * const r: CommandResult = await sb.commands.run(["sh", "-c", "echo out; echo err >&2; exit 2"]);
 * assert.deepEqual([r.stdout, r.stderr, r.exitCode, r.timedOut], ["out\n", "err\n", 2, false]);
 * assert.match(r.auditId, /^aud_[0-9a-f]{20}$/);
 * ```
 */
export interface CommandResult extends ProcessStatus {
  /** Everything the process wrote to standard output, as UTF-8 text. */
  stdout: string;
  /** Everything the process wrote to standard error, as UTF-8 text. */
  stderr: string;
}

/**
 * What `info()` and `Sandbox.list()` report.
 *
 * @example A sandbox's metadata
 * ```ts
 * import assert from "node:assert/strict";
 * import { Sandbox, type SandboxInfo } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create({ name: "docs", ttl: 120 });
 * const info: SandboxInfo = await sb.info();
 * assert.equal(info.id, sb.id);
 * assert.equal(info.state, "running");
 * assert.equal(info.name, "docs");
 * assert.equal(Date.parse(info.expiresAt) - Date.parse(info.createdAt), 120_000);
 * ```
 */
export interface SandboxInfo {
  /** The sandbox id (`sbx-` and 12 lowercase letters or digits on the local engine). */
  id: string;
  /** The state the engine sees now. */
  state: SandboxState;
  /** The engine running it. */
  engine: EngineName;
  /** The image (or template) it was created from. */
  image: string;
  /** The human-readable name given at create, if any. */
  name?: string | undefined;
  /** The workload id given at create, if any. */
  workloadId?: string | undefined;
  /** The labels given at create. */
  tags: Record<string, string>;
  /** When it was created (ISO 8601). */
  createdAt: string;
  /** When its TTL runs out and it is destroyed (ISO 8601). */
  expiresAt: string;
  /** Its lease in seconds. */
  ttlSeconds: number;
  /** Whether it outlives the process that created it (until its TTL). */
  detached: boolean;
  /**
   * The limits it really runs under, also those not set at create: the
   * tightest of its own, what its host's cgroups above it allow, and the host
   * itself (cores, memory, `pid_max`); `tmpSizeMb` is its `/tmp`'s size. A
   * missing one is one the engine cannot tell (record mode reports only what
   * was asked for).
   */
  limits: { cpu?: number | undefined; memoryMb?: number | undefined; pidsLimit?: number | undefined; tmpSizeMb?: number | undefined };
  /** The snapshot it was restored from, and how (absent for a sandbox that did not start from one). */
  restoredFrom?: RestoreInfo | undefined;
  /** The sandbox it was forked from, and how (absent for a sandbox that is not a fork). */
  forkedFrom?: ForkInfo | undefined;
}

/**
 * A file's metadata.
 *
 * @example Metadata of a written file
 * ```ts
 * import assert from "node:assert/strict";
 * import { type FileInfo, Sandbox } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * await sb.files.write("/app/run.sh", "echo hi\n", { mode: 0o755 });
 * const info: FileInfo = await sb.files.stat("/app/run.sh");
 * assert.deepEqual([info.path, info.name, info.type, info.size, info.mode], ["/app/run.sh", "run.sh", "file", 8, 0o755]);
 * ```
 */
export interface FileInfo {
  /** The path inside the sandbox. */
  path: string;
  /** The last component of the path. */
  name: string;
  /** What it is; a symlink is reported as itself, not followed. */
  type: "file" | "dir" | "symlink" | "other";
  /** Size in bytes. */
  size: number;
  /** Permission bits, e.g. `0o644`. */
  mode: number;
  /** Last modification time (ISO 8601). */
  mtime: string;
}

/**
 * What every log event carries, whatever its kind.
 *
 * @example The common fields
 * ```ts
 * import assert from "node:assert/strict";
 * import { type LogEventBase, Sandbox } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * const [first]: LogEventBase[] = await Array.fromAsync(sb.logs());
 * assert.equal(first?.seq, 0);
 * ```
 */
export interface LogEventBase {
  /**
   * Audit id of this event: on the local engine, `aud_` and 20 hex digits for
   * what the SDK recorded (the `auditId` a call returned), `sup-<pid>-<ns>`
   * for what the sandbox's supervisor recorded (start, TTL expiry, destroy);
   * either way, the id of its entry in the signed audit chain.
   */
  id: string;
  /** Position of this event in this stream, from 0. */
  seq: number;
  /** When it happened (ISO 8601). */
  time: string;
  /** Who recorded it: `"sdk"` (a client) or `"supervisor"` (the sandbox's own watcher). */
  source?: string;
}

/**
 * One structured log event, kept by the host side: a union discriminated by
 * `type`, so `switch (ev.type)` gives each kind's fields their types. Kinds:
 * `created`, `started` (the supervisor is up), `process.started`,
 * `process.exited`, `process.detached`, `network.connect` / `network.denied` (egress, with
 * `host`, `port`, `reason`), `files.write` / `files.mkdir` / `files.remove` /
 * `files.rename` / `files.writeTar`, `detached`, `ttl.set`, `tags.set`, `stopped`,
 * `sandbox.started` (after a stop), `paused`, `resumed` (and their `.noop`
 * forms), `jail.restarted` (the fresh jail a stop leaves), `destroy.requested`, `destroyed` (with
 * its `reason`), and `console` (a plain line an engine relays). An engine that
 * relays another system's log (`mvmctl`) may deliver kinds not listed here;
 * keep a `default` branch.
 *
 * @example Reading events by kind
 * ```ts
 * import assert from "node:assert/strict";
 * import { type LogEvent, Sandbox } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * const r = await sb.commands.run(["sh", "-c", "exit 3"]);
 * const events: LogEvent[] = await Array.fromAsync(sb.logs());
 * assert.ok(events.some((e) => e.type === "created"));
 * const exit = events.find((e) => e.id === r.auditId);
 * assert.ok(exit?.type === "process.exited");
 * const code: number = exit.exitCode;
 * assert.equal(code, 3);
 * ```
 */
export type LogEvent =
  & LogEventBase
  & (
    | {
      type: "created";
      image: string;
      ttlSeconds: number;
      limits: { cpu?: number; memoryMb?: number; pidsLimit?: number; tmpSizeMb?: number };
      tags: Record<string, string>;
    }
    | { type: "started"; initPid: number; ttlSeconds: number }
    | { type: "process.started"; pid: number; argv0: string; argc: number; cwd: string }
    | {
      type: "process.exited";
      pid: number;
      argv0: string;
      exitCode: number;
      signal: string | null;
      timedOut: boolean;
      oomKilled: boolean;
      durationMs: number;
    }
    | { type: "process.detached"; command: string; argv0: string; argc: number }
    | { type: "network.connect" | "network.denied"; host: string; port: number; reason?: string }
    | { type: "files.write"; path: string; size: number }
    | { type: "files.mkdir" | "files.writeTar"; path: string }
    | { type: "files.remove"; path: string; recursive: boolean }
    | { type: "files.rename"; from: string; to: string }
    | { type: "detached"; expiresAt: string }
    | { type: "ttl.set"; expiresAt: string; ttlSeconds: number }
    | { type: "tags.set"; tags: Record<string, string> }
    | {
      type:
        | "stopped"
        | "stop.noop"
        | "sandbox.started"
        | "start.noop"
        | "paused"
        | "pause.noop"
        | "resumed"
        | "resume.noop"
        | "destroy.requested";
    }
    | { type: "jail.restarted"; initPid: number }
    | { type: "destroyed"; reason: "owner-exited" | "ttl-expired" | "init-exited" | (string & Record<never, never>) }
    | { type: "console"; line: string }
  );

/**
 * What the engines report they can do.
 *
 * @example What the local engine offers
 * ```ts
 * import assert from "node:assert/strict";
 * import { type Capabilities, Sandbox } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * const caps: Capabilities = sb.capabilities();
 * assert.equal(caps.commands, true);
 * assert.equal(caps.snapshot, true);
 * assert.equal(caps.network, "none");
 * ```
 */
export interface Capabilities {
  /** Runs commands and returns their output. */
  commands: boolean;
  /** Reads and writes files. */
  files: boolean;
  /** Offers `logs()`. */
  logs: boolean;
  /** Sandboxes can outlive their creator (`detach`, `connect`). */
  detach: boolean;
  /** Pause and resume. */
  pause: boolean;
  /** Snapshots. */
  snapshot: boolean;
  /** Forking a running sandbox. */
  fork: boolean;
  /** Which resource limits are enforced. */
  limits: { cpu: boolean; memory: boolean; pids: boolean };
  /** Network: none at all, or an egress allowlist. */
  network: "none" | "allowlist";
  /** Commands on a pseudo-terminal (`commands.start(argv, { pty: true })`, `resize()`). */
  pty: boolean;
  /**
   * `pause({ toDisk: true })`: memory written to disk (`sleeping`, then `restoring` on resume). False
   * where the engine has no working memory checkpoint; such a pause then throws `UnsupportedError`
   * with the reason (on the local engine: its probe for CRIU ≥ 4), never a weaker pause.
   */
  pauseToDisk: boolean;
}
