/**
 * The engine contract: what every backend (record, local, mvmctl) implements.
 * It mirrors upstream's verbs (machine run/ls/stop/rm/pause/resume/logs, guest
 * proc start/wait/stdin/signal/kill, guest fs read/write/ls/stat/mkdir/rm/mv,
 * snapshot, fork). A capability an engine lacks throws UNSUPPORTED.
 *
 * @example
 * ```ts
 * import type { Engine } from "./contract.ts";
 * const caps = (e: Engine) => e.capabilities().snapshot;
 * ```
 * @module
 */
import type { AuditEntry } from "../audit.ts";
import type { SandboxSpec } from "../spec.ts";
import type { ForkInfo, RestoreInfo, SnapshotClass, SnapshotInfo } from "../snapshot.ts";
import type { Capabilities, CommandInfo, EngineName, FileInfo, LogEvent, ProcessStatus, SandboxInfo } from "../types.ts";

/** Options an engine receives for a guest process (validated already). */
export interface EngineStartOptions {
  cwd?: string | undefined;
  env: Record<string, string>;
  timeoutSeconds?: number | undefined;
  signal?: AbortSignal | undefined;
  /** Hand the process to a keeper so it outlives this process (engines with `commands.list/connect`). */
  detached?: boolean | undefined;
  /** Run on a pseudo-terminal of this size (engines whose `capabilities().pty` is true). */
  pty?: { cols: number; rows: number } | undefined;
}

/** A guest process as an engine runs it. */
export interface EngineProcess {
  readonly stdin: WritableStream<Uint8Array>;
  readonly stdout: ReadableStream<Uint8Array>;
  readonly stderr: ReadableStream<Uint8Array>;
  /** Resolves after the process ended and every byte of its output was delivered to the streams. */
  readonly status: Promise<ProcessStatus>;
  /** Sends a signal to the whole process tree. */
  kill(signal?: string): Promise<void>;
  /** A PTY process's new terminal size (the program gets SIGWINCH); absent without a PTY. */
  resize?(cols: number, rows: number): Promise<void>;
  /** A detached process's id (for `connectCommand`). */
  readonly id?: string;
  /** Whether the process outlives its handle (disposing the handle then does not kill it). */
  readonly detached?: boolean;
}

/**
 * What `files.write` returns: the written file's metadata and the audit id of
 * the event that recorded the write.
 *
 * @example A write's result
 * ```ts
 * import assert from "node:assert/strict";
 * import { Sandbox, type WrittenFile } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * const w: WrittenFile = await sb.files.write("/app/data.txt", "12345");
 * assert.equal(w.size, 5);
 * assert.match(w.auditId, /^aud_[0-9a-f]{20}$/);
 * ```
 */
export type WrittenFile = FileInfo & { auditId: string };

/** Guest file operations (paths validated already; relative to the sandbox's working directory). */
export interface EngineFiles {
  // `signal` (on the streaming verbs): when it aborts, the engine ends the helper serving the call (guest code may have stopped
  // it); the caller has already rejected with the signal's reason
  readStream(path: string, range: { offset?: number; length?: number }, signal?: AbortSignal): Promise<ReadableStream<Uint8Array>>;
  write(
    path: string,
    data: ReadableStream<Uint8Array>,
    opts: { mode: number; createParents: boolean },
    signal?: AbortSignal,
  ): Promise<WrittenFile>;
  list(path: string): Promise<FileInfo[]>;
  stat(path: string): Promise<FileInfo>;
  mkdir(path: string, opts: { parents: boolean; mode: number }): Promise<WrittenFile>;
  remove(path: string, opts: { recursive: boolean }): Promise<string>;
  rename(from: string, to: string): Promise<WrittenFile>;
  /** Unpacks a tar stream into a directory (made if missing); returns the audit id. */
  writeTar(dir: string, tar: ReadableStream<Uint8Array>, signal?: AbortSignal): Promise<string>;
  /** Packs a directory into a tar stream. */
  readTar(dir: string, signal?: AbortSignal): Promise<ReadableStream<Uint8Array>>;
  /** Sets a path's mode (absent: the engine cannot; the SDK says UNSUPPORTED). */
  chmod?(path: string, mode: number): Promise<WrittenFile>;
  /** Copies a file, or a tree with `recursive`, inside the sandbox; symlinks are copied as symlinks. */
  copy?(from: string, to: string, opts: { recursive: boolean; overwrite: boolean }): Promise<WrittenFile>;
  /** Makes a symlink at `path` pointing at `target` (taken as it is, not resolved). */
  symlink?(target: string, path: string): Promise<WrittenFile>;
  /** The canonical absolute path (every symlink resolved; the path must exist). */
  realpath?(path: string): Promise<string>;
  /** A symlink's target, as stored. */
  readlink?(path: string): Promise<string>;
}

/** One sandbox as an engine holds it. Lifecycle verbs return the audit id of what they recorded. */
export interface EngineSandbox {
  readonly id: string;
  /** What this sandbox can do, when it differs from the engine's general answer (e.g. no cgroups here). */
  capabilities?(): Capabilities;
  info(): Promise<SandboxInfo>;
  /** The detached processes (absent: the engine has none). */
  commands?(): Promise<CommandInfo[]>;
  /** Re-attaches to a detached process, reading from where it joins (`"now"`) or the oldest byte kept (`"start"`). */
  connectCommand?(id: string, from: "start" | "now"): Promise<EngineProcess>;
  start(argv: string[], opts: EngineStartOptions): Promise<EngineProcess>;
  readonly files: EngineFiles;
  logs(opts: { follow: boolean }): ReadableStream<LogEvent>;
  /** This sandbox's entries in the engine's audit chain, oldest first (also after destroy). */
  audit?(): ReadableStream<AuditEntry>;
  stop(): Promise<string>;
  /** Brings a stopped sandbox back to running (`sb.start()`). */
  startStopped?(): Promise<string>;
  /** Freezes every process (engines without a freezer leave it out: the SDK says UNSUPPORTED). */
  pause?(opts: { toDisk?: boolean }): Promise<string>;
  /** Thaws a paused sandbox; a running one stays as it is. */
  resume?(): Promise<string>;
  destroy(): Promise<string>;
  /** Keeps the sandbox alive after this process exits, until its TTL. */
  detach(): Promise<string>;
  /** Replaces the lease: the sandbox now ends `seconds` from now. Absent when the engine cannot. */
  setTtl?(seconds: number): Promise<string>;
  /** Replaces the sandbox's tags; returns the audit id. */
  setTags?(tags: Record<string, string>): Promise<string>;
  /** Lets go of a connected sandbox without changing it. */
  disconnect(): Promise<void>;
  /** Captures the sandbox's filesystem into a sealed snapshot (absent: the engine has none). */
  snapshot?(opts: EngineSnapshotOptions): Promise<SnapshotInfo>;
  /** How it was restored, when it started from a snapshot. */
  readonly restoredFrom?: RestoreInfo | undefined;
  /** How it was forked, when it is a fork. */
  readonly forkedFrom?: ForkInfo | undefined;
  /** Whether a fork can clone its files directly (copy-on-write storage; absent: never, a fork snapshots). */
  cloneable?(): Promise<boolean>;
}

/** What an engine's snapshot takes (validated already; `retentionSeconds: null` keeps it forever). */
export interface EngineSnapshotOptions {
  name?: string | undefined;
  retentionSeconds: number | null;
  class: SnapshotClass;
}

/** An engine's snapshot store (`Snapshot.list/get/delete`). */
export interface EngineSnapshots {
  list(): Promise<SnapshotInfo[]>;
  get(id: string): Promise<SnapshotInfo>;
  delete(id: string): Promise<string>;
}

/** A backend. */
export interface Engine {
  readonly name: EngineName;
  capabilities(): Capabilities;
  create(spec: SandboxSpec): Promise<EngineSandbox>;
  connect(id: string): Promise<EngineSandbox>;
  list(filter: { tags?: Record<string, string> | undefined }): Promise<SandboxInfo[]>;
  /** Its snapshots (absent: the engine keeps none). */
  readonly snapshots?: EngineSnapshots;
  /** The id of the live sandbox with this name, or null; without it, `Sandbox.connect({ name })` searches `list()`. */
  findByName?(name: string): Promise<string | null>;
}
