/**
 * Typed errors with stable codes. One class per category that needs a
 * different recovery; `code` is stable across releases and engines. Every
 * class extends {@linkcode SandboxError}, which carries `code`, `details` and
 * `cause`; a category is a class that names its code in a static field.
 *
 * @example Telling a missing file from other failures
 * ```ts
 * import assert from "node:assert/strict";
 * import { NotFoundError, Sandbox, SandboxError } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * const e = await sb.files.read("/app/missing.txt").catch((e: unknown) => e);
 * assert.ok(e instanceof NotFoundError);
 * assert.ok(e instanceof SandboxError);
 * assert.equal(e.code, "NOT_FOUND");
 * ```
 * @module
 */
import { redact, redactJson } from "./redact.ts";

/** Every stable error code the SDK uses, one per error class. */
export type ErrorCode =
  | "POLICY_DENIED"
  | "ADMISSION"
  | "COMMAND_FAILED"
  | "TIMEOUT"
  | "TRANSPORT"
  | "CLEANUP"
  | "INTEGRITY"
  | "UNSUPPORTED"
  | "NOT_FOUND"
  | "INVALID_INPUT"
  | "CONFLICT"
  | "PERMISSION_DENIED"
  | "NOT_A_DIRECTORY"
  | "IS_A_DIRECTORY"
  | "NO_SPACE"
  | "INTERNAL";

/**
 * What every error class's constructor takes besides its message.
 *
 * @example Wrapping a lower-level failure
 * ```ts
 * import assert from "node:assert/strict";
 * import { TransportError, type SandboxErrorOptions } from "@mvm/sdk";
 *
 * const options: SandboxErrorOptions = { details: { id: "sbx-1" }, cause: new Error("EPIPE") };
 * const e = new TransportError("the sandbox went away", options);
 * assert.deepEqual(e.details, { id: "sbx-1" });
 * assert.equal((e.cause as Error).message, "EPIPE");
 * ```
 */
export interface SandboxErrorOptions {
  /** Extra structured detail (never a secret value); `{}` when omitted. */
  details?: Record<string, unknown>;
  /** The error that caused this one, kept as the standard `Error.cause`. */
  cause?: unknown;
  /** Overrides the class's code; only for a plain `SandboxError`, whose default is `"INTERNAL"`. */
  code?: ErrorCode;
}

/**
 * Base class of every error the SDK throws. Its `code` comes from the class
 * (each subclass sets a static `code`), `name` is the class's name, and
 * `instanceof` works for the base and for the category.
 *
 * @example Handling any SDK error by its code
 * ```ts
 * import assert from "node:assert/strict";
 * import { Sandbox, SandboxError } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * try {
 *   await sb.files.read("/etc/no-such-file");
 *   assert.fail("the read should have failed");
 * } catch (e) {
 *   assert.ok(e instanceof SandboxError);
 *   assert.equal(e.code, "NOT_FOUND");
 *   assert.equal(e.name, "NotFoundError");
 * }
 * ```
 */
export class SandboxError extends Error {
  /** The code instances of this class carry; each subclass names its own. */
  static readonly code: ErrorCode = "INTERNAL";
  /** The stable code of this error's category. */
  readonly code: ErrorCode;
  /** Extra structured detail (never a secret value). */
  readonly details: Record<string, unknown>;
  /** Builds an error of this class's category; `options.cause` becomes the standard `Error.cause`. */
  constructor(message: string, options: SandboxErrorOptions = {}) {
    // a secret value never leaves in an error: message (and so the stack) and details are redacted
    super(redact(message), options.cause !== undefined ? { cause: options.cause } : undefined);
    this.code = options.code ?? (new.target as typeof SandboxError).code;
    this.details = redactJson(options.details ?? {});
    this.name = new.target.name;
  }
}

/**
 * A network or secret policy refused the operation. Not thrown yet: it is the
 * category the egress boundary (network allowlists with secret injection)
 * will use when a guest reaches a host its policy does not allow; until that
 * lands, a policy that allows hosts is refused with {@linkcode UnsupportedError}.
 *
 * @example Telling a policy refusal apart
 * ```ts
 * import assert from "node:assert/strict";
 * import { PolicyDeniedError, SandboxError } from "@mvm/sdk";
 *
 * const e = new PolicyDeniedError("egress to example.com:443 is not allowed", { details: { host: "example.com", port: 443 } });
 * assert.ok(e instanceof SandboxError);
 * assert.equal(e.code, "POLICY_DENIED");
 * ```
 */
export class PolicyDeniedError extends SandboxError {
  /** `"POLICY_DENIED"` */
  static override readonly code: ErrorCode = "POLICY_DENIED";
}

/**
 * Admission (the workload checks upstream runs before boot) refused the spec.
 * {@linkcode toWorkload} throws it today (`details.error` is `"NoEntrypoint"`
 * or `"UnknownBaseImage"`); the `mvmctl` engine will throw it for what
 * upstream's admission refuses.
 *
 * @example A recording without an entrypoint is refused
 * ```ts
 * import assert from "node:assert/strict";
 * import { AdmissionError, type RuntimeRecording, toWorkload } from "@mvm/sdk";
 *
 * const recording: RuntimeRecording = {
 *   workload_id: "empty",
 *   create: { image: "host", env: {}, include: [], tags: {}, ttl_seconds: 60 },
 *   ops: [],
 * };
 * assert.throws(() => toWorkload(recording), (e: unknown) => e instanceof AdmissionError && e.details.error === "NoEntrypoint");
 * ```
 */
export class AdmissionError extends SandboxError {
  /** `"ADMISSION"` */
  static override readonly code: ErrorCode = "ADMISSION";
}

/**
 * What a {@linkcode CommandExitError} or {@linkcode CommandTimeoutError}
 * carries: the command's whole result (the same shape as `commands.run`'s).
 *
 * @example Reading a failed command's result
 * ```ts
 * import assert from "node:assert/strict";
 * import { CommandExitError, type CommandExitResult } from "@mvm/sdk";
 *
 * const result: CommandExitResult = {
 *   exitCode: 1, signal: null, stdout: "", stderr: "no\n", timedOut: false, oomKilled: false, durationMs: 3, auditId: "aud_0",
 * };
 * assert.equal(new CommandExitError("failed", result).result.timedOut, false);
 * ```
 */
export interface CommandExitResult {
  /** The exit code; 128 + the signal's number when a signal ended the command. */
  exitCode: number;
  /** The signal that ended the command (e.g. `"SIGKILL"`), or null. */
  signal: string | null;
  /** Everything the command wrote to standard output. */
  stdout: string;
  /** Everything the command wrote to standard error. */
  stderr: string;
  /** Whether `timeoutSeconds` ran out (then the error is a {@linkcode CommandTimeoutError}). */
  timedOut: boolean;
  /** Whether the command was killed for going over `memoryMb`. */
  oomKilled: boolean;
  /** Wall-clock time from start to exit, in milliseconds. */
  durationMs: number;
  /** The audit id of the event that recorded the exit. */
  auditId: string;
}

/** The last lines of a command's stderr for an error message: at most 5 lines and 500 characters. */
function stderrTail(stderr: string): string {
  const lines = stderr.trimEnd().split("\n");
  let tail = lines.slice(-5).join("\n");
  if (tail.length > 500) tail = `…${tail.slice(-500)}`;
  else if (lines.length > 5) tail = `…\n${tail}`;
  return tail;
}

/**
 * The message of a failed command: what ended it and the tail of its stderr.
 *
 * @example `commandFailureMessage(["false"], result) // 'command "false" exited with code 1'`
 */
export function commandFailureMessage(argv: readonly string[], r: CommandExitResult): string {
  const how = r.timedOut
    ? `timed out and was killed (${r.signal ?? `exit code ${r.exitCode}`})`
    : r.signal
    ? `was killed by ${r.signal} (exit code ${r.exitCode})`
    : `exited with code ${r.exitCode}`;
  const tail = stderrTail(r.stderr);
  return `command ${JSON.stringify(argv[0] ?? "")} ${how}${r.oomKilled ? " (out of memory: raise memoryMb)" : ""}${
    tail ? `; stderr ends with:\n${tail}` : "; its stderr is empty"
  }`;
}

/**
 * The guest command exited non-zero (or a signal ended it) and the caller
 * asked to throw (`check: true`). The full result is on `result`; the message
 * ends with the last lines of its stderr.
 *
 * @example `check: true` turns a failed command into an error
 * ```ts
 * import assert from "node:assert/strict";
 * import { CommandExitError, Sandbox } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * await assert.rejects(
 *   sb.commands.run(["sh", "-c", "echo oops >&2; exit 3"], { check: true }),
 *   (e: unknown) => e instanceof CommandExitError && e.result.exitCode === 3 && e.result.stderr === "oops\n" && e.message.endsWith("oops"),
 * );
 * ```
 */
export class CommandExitError extends SandboxError {
  /** `"COMMAND_FAILED"` */
  static override readonly code: ErrorCode = "COMMAND_FAILED";
  /** The captured result of the failed command. */
  readonly result: CommandExitResult;
  /** Builds the error from the command's result; `details` holds its exit code and signal. */
  constructor(message: string, result: CommandExitResult) {
    super(message, { details: { exitCode: result.exitCode, signal: result.signal } });
    this.result = result;
  }
}

/**
 * An operation of the SDK did not finish in time. A command's own
 * `timeoutSeconds` kills the command and its result says `timedOut: true`;
 * with `check: true` the command throws {@linkcode CommandTimeoutError}, a
 * `TimeoutError` that carries the result.
 *
 * @example A command's timeout
 * ```ts
 * import assert from "node:assert/strict";
 * import { Sandbox, TimeoutError } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * const r = await sb.commands.run(["sleep", "30"], { timeoutSeconds: 1 });
 * assert.equal(r.timedOut, true);
 * await assert.rejects(sb.commands.run(["sleep", "30"], { timeoutSeconds: 1, check: true }), TimeoutError);
 * ```
 */
export class TimeoutError extends SandboxError {
  /** `"TIMEOUT"` */
  static override readonly code: ErrorCode = "TIMEOUT";
}

/**
 * A command ran out of its `timeoutSeconds` under `check: true`: its process
 * tree was killed, and `result` holds what it printed until then.
 *
 * @example Catching a timed-out command
 * ```ts
 * import assert from "node:assert/strict";
 * import { CommandTimeoutError, Sandbox, TimeoutError } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * const e = await sb.commands.run(["sh", "-c", "echo started; sleep 30"], { timeoutSeconds: 1, check: true }).catch((e) => e);
 * assert.ok(e instanceof TimeoutError && e instanceof CommandTimeoutError);
 * assert.equal(e.code, "TIMEOUT");
 * assert.deepEqual([e.result.timedOut, e.result.stdout, e.result.exitCode], [true, "started\n", 137]);
 * ```
 */
export class CommandTimeoutError extends TimeoutError {
  /** The captured result of the command, `timedOut: true`. */
  readonly result: CommandExitResult;
  /** Builds the error from the command's result; `details` holds its exit code and signal. */
  constructor(message: string, result: CommandExitResult) {
    super(message, { details: { exitCode: result.exitCode, signal: result.signal, timedOut: true } });
    this.result = result;
  }
}

/**
 * The engine, supervisor or sandbox is unreachable or died mid-operation: an
 * output stream open when its sandbox is destroyed errors with it, and never
 * ends as if the output were complete.
 *
 * @example A stream cut by destroy says so
 * ```ts
 * import assert from "node:assert/strict";
 * import { Sandbox, TransportError } from "@mvm/sdk";
 *
 * const sb = await Sandbox.create();
 * const p = await sb.commands.start(["yes"]);
 * const reader = p.stdout.getReader();
 * await reader.read();
 * const destroyed = sb.destroy();
 * await assert.rejects(async () => {
 *   while (!(await reader.read()).done);
 * }, TransportError);
 * await destroyed;
 * ```
 */
export class TransportError extends SandboxError {
  /** `"TRANSPORT"` */
  static override readonly code: ErrorCode = "TRANSPORT";
}

/**
 * Cleanup did not complete: something may be left behind, and the message
 * says what. Not thrown yet: the local engine's teardown retries until
 * everything is gone and the supervisor reaps what a dead client left; this is
 * the category for teardown that gives up (a cgroup that stays busy, a folder
 * that cannot be removed), which the `mvmctl` engine and cold mode will report.
 *
 * @example Reporting what was left behind
 * ```ts
 * import assert from "node:assert/strict";
 * import { CleanupError } from "@mvm/sdk";
 *
 * const e = new CleanupError("cgroup mvm/sbx-1 is still busy", { details: { left: ["cgroup mvm/sbx-1"] } });
 * assert.equal(e.code, "CLEANUP");
 * assert.deepEqual(e.details.left, ["cgroup mvm/sbx-1"]);
 * ```
 */
export class CleanupError extends SandboxError {
  /** `"CLEANUP"` */
  static override readonly code: ErrorCode = "CLEANUP";
}

/**
 * A snapshot or audit record did not match its recorded hash or seal. Not
 * thrown yet: it is the category snapshots/fork and the hash-chained audit log
 * will use when what they read back was altered.
 *
 * @example An integrity failure is never retried
 * ```ts
 * import assert from "node:assert/strict";
 * import { IntegrityError, SandboxError } from "@mvm/sdk";
 *
 * const retryable = (e: unknown) => e instanceof SandboxError && !(e instanceof IntegrityError);
 * assert.equal(retryable(new IntegrityError("audit event 7 breaks the hash chain")), false);
 * ```
 */
export class IntegrityError extends SandboxError {
  /** `"INTEGRITY"` */
  static override readonly code: ErrorCode = "INTEGRITY";
}

/**
 * The engine or mode lacks this capability. Never a silent fallback.
 *
 * @example An option the local engine cannot enforce is refused, not ignored
 * ```ts
 * import assert from "node:assert/strict";
 * import { Sandbox, UnsupportedError } from "@mvm/sdk";
 *
 * await assert.rejects(Sandbox.create({ rootfsSizeMb: 64 }), UnsupportedError);
 * ```
 */
export class UnsupportedError extends SandboxError {
  /** `"UNSUPPORTED"` */
  static override readonly code: ErrorCode = "UNSUPPORTED";
}

/**
 * A sandbox, file, process or binary does not exist.
 *
 * @example Connecting to a sandbox that is not there
 * ```ts
 * import assert from "node:assert/strict";
 * import { NotFoundError, Sandbox } from "@mvm/sdk";
 *
 * await assert.rejects(Sandbox.connect("sbx-000000000000"), NotFoundError);
 * ```
 */
export class NotFoundError extends SandboxError {
  /** `"NOT_FOUND"` */
  static override readonly code: ErrorCode = "NOT_FOUND";
}

/**
 * The caller passed something malformed; `details.field` names it.
 *
 * @example A bad option names its field
 * ```ts
 * import assert from "node:assert/strict";
 * import { InvalidInputError, Sandbox } from "@mvm/sdk";
 *
 * await assert.rejects(
 *   Sandbox.create({ memoryMb: -1 }),
 *   (e: unknown) => e instanceof InvalidInputError && e.details.field === "memoryMb",
 * );
 * ```
 */
export class InvalidInputError extends SandboxError {
  /** `"INVALID_INPUT"` */
  static override readonly code: ErrorCode = "INVALID_INPUT";
}

/**
 * The operation is not allowed in the sandbox's current state, or the path's
 * current state (a directory that exists, one that is not empty).
 *
 * @example A stopped sandbox runs nothing
 * ```ts
 * import assert from "node:assert/strict";
 * import { ConflictError, Sandbox } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * await sb.stop();
 * await assert.rejects(sb.commands.run(["true"]), ConflictError);
 * ```
 */
export class ConflictError extends SandboxError {
  /** `"CONFLICT"` */
  static override readonly code: ErrorCode = "CONFLICT";
}

/**
 * A permission was refused: a Deno permission flag is missing on the host
 * (`details.flag` names it), or a path is read-only / not accessible inside
 * the sandbox.
 *
 * @example The host's `/usr` is read-only in the sandbox
 * ```ts
 * import assert from "node:assert/strict";
 * import { PermissionDeniedError, Sandbox } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * await assert.rejects(sb.files.write("/usr/bin/evil", "x"), PermissionDeniedError);
 * ```
 */
export class PermissionDeniedError extends SandboxError {
  /** `"PERMISSION_DENIED"` */
  static override readonly code: ErrorCode = "PERMISSION_DENIED";
}

/**
 * A path component that must be a directory is not one.
 *
 * @example Listing a file
 * ```ts
 * import assert from "node:assert/strict";
 * import { NotADirectoryError, Sandbox } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * await sb.files.write("/app/file", "x");
 * await assert.rejects(sb.files.list("/app/file"), NotADirectoryError);
 * ```
 */
export class NotADirectoryError extends SandboxError {
  /** `"NOT_A_DIRECTORY"` */
  static override readonly code: ErrorCode = "NOT_A_DIRECTORY";
}

/**
 * A file operation met a directory where it needs a file.
 *
 * @example Reading a directory as a file
 * ```ts
 * import assert from "node:assert/strict";
 * import { IsADirectoryError, Sandbox } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * await sb.files.mkdir("/data");
 * await assert.rejects(sb.files.read("/data"), IsADirectoryError);
 * ```
 */
export class IsADirectoryError extends SandboxError {
  /** `"IS_A_DIRECTORY"` */
  static override readonly code: ErrorCode = "IS_A_DIRECTORY";
}

/**
 * The sandbox's writable layer (or its `/tmp`) is full.
 *
 * @example Writing past `tmpSizeMb`
 * ```ts
 * import assert from "node:assert/strict";
 * import { NoSpaceError, Sandbox } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create({ tmpSizeMb: 1 });
 * await assert.rejects(sb.files.write("/tmp/big", new Uint8Array(3 * 1024 * 1024)), NoSpaceError);
 * ```
 */
export class NoSpaceError extends SandboxError {
  /** `"NO_SPACE"` */
  static override readonly code: ErrorCode = "NO_SPACE";
}

/**
 * A bug or an unexpected state of the SDK itself; the message says what, and
 * a report of it is welcome.
 *
 * @example The code a plain SandboxError gets too
 * ```ts
 * import assert from "node:assert/strict";
 * import { InternalError, SandboxError } from "@mvm/sdk";
 *
 * assert.equal(new InternalError("no file info came back").code, "INTERNAL");
 * assert.equal(new SandboxError("unexpected").code, "INTERNAL");
 * ```
 */
export class InternalError extends SandboxError {
  /** `"INTERNAL"` */
  static override readonly code: ErrorCode = "INTERNAL";
}

/** Shorthand used by validators: an INVALID_INPUT error naming the field. @example `throw invalid("ttl", "must be positive")` */
export function invalid(field: string, message: string): InvalidInputError {
  return new InvalidInputError(`${field}: ${message}`, { details: { field } });
}
