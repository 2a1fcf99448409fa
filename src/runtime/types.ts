/**
 * The runtime shim's one interface: spawn a process with Web Streams for
 * stdin, stdout and stderr; kill it; read its exit status. One file per
 * runtime implements it (`deno.ts`, `bun.ts`, `node.ts`); nothing else in the
 * SDK knows which runtime it is on.
 *
 * @example
 * ```ts
 * import { runtime } from "./mod.ts";
 * const child = await runtime().spawn("echo", ["hi"], { stdout: "piped" });
 * console.log(await new Response(child.stdout).text(), await child.status);
 * ```
 * @module
 */

import { PermissionDeniedError } from "../errors.ts";

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

/** What one runtime provides. */
export interface Runtime {
  readonly name: "deno" | "bun" | "node";
  /** Starts `cmd` with `args`. Rejects with NotFoundError for a missing binary, PermissionDeniedError when the runtime forbids it. */
  spawn(cmd: string, args: readonly string[], options?: SpawnOptions): Promise<ChildProcess>;
}

/** Normalises an exit: a signal wins over the shell-style 128+n code. */
export function exitStatus(code: number | null, signal: string | number | null): ExitStatus {
  if (signal !== null && signal !== undefined && signal !== "") {
    return { code: null, signal: typeof signal === "number" ? `SIG${signal}` : signal };
  }
  return { code, signal: null };
}

/** A {@linkcode Stdio} in the spelling of `node:child_process` and `Bun.spawn` (`"pipe"`, `"ignore"`, `"inherit"`). @example `nodeStdio(undefined, "piped") // "pipe"` */
export function nodeStdio(s: Stdio | undefined, fallback: Stdio): "pipe" | "ignore" | "inherit" {
  const v = s ?? fallback;
  return v === "piped" ? "pipe" : v === "null" ? "ignore" : "inherit";
}

/**
 * A Deno permission refusal (`NotCapable`) as a typed error that names the flag to grant, or null
 * when `e` is something else.
 *
 * @example `throw permissionRefusal(e, "--allow-run", "running bwrap") ?? e`
 */
export function permissionRefusal(e: unknown, flag: string, what: string): PermissionDeniedError | null {
  const name = (e as { name?: string })?.name;
  const onDeno = (globalThis as Record<string, unknown>).Deno !== undefined;
  if (name !== "NotCapable" && !(name === "PermissionDenied" && onDeno)) return null;
  return new PermissionDeniedError(`Deno refused ${what}: grant it with ${flag}`, { cause: e, details: { flag } });
}
