/**
 * The runtime shim's one interface: spawn a process with Web Streams for
 * stdin, stdout and stderr; kill it; read its exit status. One file per
 * runtime implements it (`deno.ts`, `bun.ts`, `node.ts`); nothing else in the
 * SDK knows which runtime it is on.
 *
 * @example Spawning through the interface
 * ```ts
 * import assert from "node:assert/strict";
 * import { runtime } from "./mod.ts";
 * const child = await runtime().spawn("echo", ["hi"], { stdout: "piped" });
 * assert.equal(await new Response(child.stdout).text(), "hi\n");
 * assert.deepEqual(await child.status, { code: 0, signal: null });
 * ```
 * @module
 */

/** The runtimes the shim supports. */
export type RuntimeName = "deno" | "bun" | "node";

/** How one standard stream of the child is wired. */
export type Stdio = "piped" | "null" | "inherit";

/** Options for {@linkcode Runtime.spawn}. */
export interface SpawnOptions {
  /** Working directory of the child. */
  cwd?: string;
  /** Extra environment (merged into the parent's unless `clearEnv`). */
  env?: Record<string, string>;
  /** Start from an empty environment: the child sees only `env`. */
  clearEnv?: boolean;
  /** Default `"null"`. */
  stdin?: Stdio;
  /** Default `"piped"`. */
  stdout?: Stdio;
  /** Default `"piped"`. */
  stderr?: Stdio;
  /** Aborting sends SIGKILL to the child. */
  signal?: AbortSignal;
}

/** How a child ended: `code` when it exited, `signal` (e.g. `"SIGKILL"`) when a signal ended it. */
export interface ExitStatus {
  code: number | null;
  signal: string | null;
}

/** A spawned child process. */
export interface ChildProcess {
  readonly pid: number;
  /** Present when spawned with `stdin: "piped"`. */
  readonly stdin: WritableStream<Uint8Array> | null;
  /** Present when spawned with `stdout: "piped"`. */
  readonly stdout: ReadableStream<Uint8Array> | null;
  /** Present when spawned with `stderr: "piped"`. */
  readonly stderr: ReadableStream<Uint8Array> | null;
  /** Resolves once the child exited. */
  readonly status: Promise<ExitStatus>;
  /** Sends a signal (default SIGTERM); a no-op once the child exited. */
  kill(signal?: string): void;
  /** Lets this process exit while the child still runs. */
  unref(): void;
  /** Undoes {@linkcode unref}: the child keeps this process alive again. */
  ref(): void;
}

/** An exclusive lock on a file (`flock`), released when the process dies. */
export interface FileLock {
  /** Waits until this process holds the lock. */
  lock(): void;
  unlock(): void;
  /** Closes the file (which drops the lock too). */
  close(): void;
}

/**
 * This process's own terminal, for a command line that hands it to a sandboxed program (`mvm exec -it`):
 * raw mode, its size, and its size changes.
 */
export interface HostTerminal {
  /** Whether stdin and stdout are both terminals. */
  interactive(): boolean;
  /** Raw mode on stdin (each byte as typed: no echo, no line editing, Ctrl-C as a byte), or back to what it was. */
  setRaw(on: boolean): void;
  /** The terminal's size (of stdout), or null when there is none. */
  size(): { cols: number; rows: number } | null;
  /** Calls `fn` whenever the terminal's size changes (SIGWINCH); returns what stops it. */
  onResize(fn: () => void): () => void;
}

/** What one runtime provides. */
export interface Runtime {
  readonly name: RuntimeName;
  /**
   * Opens (creating it 0600) a lock file whose `flock` the kernel drops when the process dies; absent
   * where the runtime offers no `flock` (Node), and callers then fall back to a lock folder.
   */
  lockFile?: (path: string) => FileLock;
  /** This process's terminal (raw mode, size, SIGWINCH). */
  terminal?: HostTerminal;
  /** Starts `cmd` with `args`. Rejects with NotFoundError for a missing binary, PermissionDeniedError when the runtime forbids it. */
  spawn(cmd: string, args: readonly string[], options?: SpawnOptions): Promise<ChildProcess>;
  /**
   * Opens a fifo by path: its read end as a stream (`"read"`, closed at its end or on cancel) or its
   * write end (`"write"`, closed by `close`/`abort`). The open must not wait: a process already holds
   * the other end (opening a fifo's end without one blocks, or fails).
   */
  openFifo(path: string, end: "read"): ReadableStream<Uint8Array>;
  openFifo(path: string, end: "write"): WritableStream<Uint8Array>;
}
