/**
 * Typed errors with stable codes. One class per category that needs a
 * different recovery; `code` is stable across releases and engines.
 *
 * @example
 * ```ts
 * import { SandboxError, NotFoundError } from "./mod.ts";
 * try { await Sandbox.connect("sbx-nope"); }
 * catch (e) { if (e instanceof NotFoundError) console.log(e.code); } // "NOT_FOUND"
 * ```
 * @module
 */

/** Every stable error code the SDK uses. */
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
 * Base class of every error the SDK throws.
 *
 * @example
 * ```ts
 * try { await sb.files.read("/nope"); }
 * catch (e) { if (e instanceof SandboxError) console.log(e.code, e.message); }
 * ```
 */
export class SandboxError extends Error {
  /** The stable code of this error's category. */
  readonly code: ErrorCode;
  /** Extra structured detail (never a secret value). */
  readonly details: Record<string, unknown>;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.code = code;
    this.details = options?.details ?? {};
    this.name = new.target.name;
  }
}

/** A network or secret policy refused the operation. @example `if (e instanceof PolicyDeniedError) …` */
export class PolicyDeniedError extends SandboxError {
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super("POLICY_DENIED", message, options);
  }
}
/** Admission (the workload checks upstream runs before boot) refused the spec. @example `if (e instanceof AdmissionError) …` */
export class AdmissionError extends SandboxError {
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super("ADMISSION", message, options);
  }
}
/**
 * The guest command exited non-zero and the caller asked to throw (`check: true`).
 * The full result is on `result`.
 *
 * @example
 * ```ts
 * try { await sb.commands.run(["false"], { check: true }); }
 * catch (e) { if (e instanceof CommandExitError) console.log(e.result.exitCode); }
 * ```
 */
export class CommandExitError extends SandboxError {
  /** The captured result of the failed command. */
  readonly result: { exitCode: number | null; signal: string | null; stdout: string; stderr: string; auditId: string };
  constructor(message: string, result: CommandExitError["result"]) {
    super("COMMAND_FAILED", message, { details: { exitCode: result.exitCode, signal: result.signal } });
    this.result = result;
  }
}
/** An operation did not finish in time. @example `if (e instanceof TimeoutError) …` */
export class TimeoutError extends SandboxError {
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super("TIMEOUT", message, options);
  }
}
/** The engine, supervisor or sandbox is unreachable or died mid-operation. @example `if (e instanceof TransportError) …` */
export class TransportError extends SandboxError {
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super("TRANSPORT", message, options);
  }
}
/** Cleanup did not complete (something may be left behind; the message says what). @example `if (e instanceof CleanupError) …` */
export class CleanupError extends SandboxError {
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super("CLEANUP", message, options);
  }
}
/** A snapshot or audit record did not match its recorded hash or seal. @example `if (e instanceof IntegrityError) …` */
export class IntegrityError extends SandboxError {
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super("INTEGRITY", message, options);
  }
}
/** The engine or mode lacks this capability. Never a silent fallback. @example `if (e instanceof UnsupportedError) …` */
export class UnsupportedError extends SandboxError {
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super("UNSUPPORTED", message, options);
  }
}
/** A sandbox, file, process or binary does not exist. @example `if (e instanceof NotFoundError) …` */
export class NotFoundError extends SandboxError {
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super("NOT_FOUND", message, options);
  }
}
/** The caller passed something malformed; `details.field` names it. @example `if (e instanceof InvalidInputError) console.log(e.details.field)` */
export class InvalidInputError extends SandboxError {
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super("INVALID_INPUT", message, options);
  }
}
/** The operation is not allowed in the sandbox's current state. @example `if (e instanceof ConflictError) …` */
export class ConflictError extends SandboxError {
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super("CONFLICT", message, options);
  }
}
/**
 * A permission was refused: a Deno permission flag is missing on the host, or
 * a path is read-only / not accessible inside the sandbox.
 *
 * @example `if (e instanceof PermissionDeniedError) …`
 */
export class PermissionDeniedError extends SandboxError {
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super("PERMISSION_DENIED", message, options);
  }
}
/** A path component that must be a directory is not one. @example `if (e instanceof NotADirectoryError) …` */
export class NotADirectoryError extends SandboxError {
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super("NOT_A_DIRECTORY", message, options);
  }
}
/** A file operation met a directory where it needs a file. @example `if (e instanceof IsADirectoryError) …` */
export class IsADirectoryError extends SandboxError {
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super("IS_A_DIRECTORY", message, options);
  }
}
/** The sandbox's writable layer is full. @example `if (e instanceof NoSpaceError) …` */
export class NoSpaceError extends SandboxError {
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super("NO_SPACE", message, options);
  }
}
/** A bug or an unexpected state of the SDK itself. @example `if (e instanceof InternalError) …` */
export class InternalError extends SandboxError {
  constructor(message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super("INTERNAL", message, options);
  }
}

/** Shorthand used by validators: an INVALID_INPUT error naming the field. */
export function invalid(field: string, message: string): InvalidInputError {
  return new InvalidInputError(`${field}: ${message}`, { details: { field } });
}
