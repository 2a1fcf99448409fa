/**
 * Deno's permission refusals as typed errors that name the flag, and its value, to grant; and the
 * exact environment variables the SDK reads. On Bun and Node nothing is ever refused, so these pass
 * errors through.
 *
 * @example A refusal names its flag
 * ```ts
 * import assert from "node:assert/strict";
 * import { PermissionDeniedError } from "../errors.ts";
 * import { permissionRefusal } from "./permissions.ts";
 * const refusal = Object.assign(new Error('Requires run access to "/usr/bin/perl", run again with the --allow-run flag'), { name: "NotCapable" });
 * const e = permissionRefusal(refusal, "--allow-run", "running perl");
 * assert.ok(e instanceof PermissionDeniedError);
 * assert.equal(e.details.flag, "--allow-run=/usr/bin/perl");
 * ```
 * @module
 */
import { PermissionDeniedError } from "../errors.ts";

/** Every flag the SDK needs on Deno, unscoped (the scoped set is `denoFlags()` of the local engine). */
export const DENO_FLAGS = "--allow-run --allow-read --allow-write --allow-env";

/**
 * The environment variables the SDK reads, for `--allow-env=<names>`. A refusal of a `required` one
 * is a `PermissionDeniedError`; an `optional` one that Deno refuses counts as unset (its default).
 * `MVM_SDK_MODE` and `MVM_SDK_OUT_PATH` are required because they can turn on record mode, which must
 * win over running anything; `HOME` and `XDG_STATE_HOME` are read only when `MVM_STATE_DIR` is unset.
 */
export const SDK_ENV: { readonly required: readonly string[]; readonly optional: readonly string[] } = {
  required: ["MVM_SDK_MODE", "MVM_SDK_OUT_PATH", "MVM_STATE_DIR", "XDG_STATE_HOME", "HOME"],
  optional: ["MVM_BWRAP", "MVM_WARM_POOL", "MVM_FREEZER", "MVM_CLI_BIN", "MVM_MACHINE_TIMEOUT_SEC", "MVM_MACHINE_MAX_OUTPUT_BYTES"],
};

/** Whether `e` is a Deno permission refusal (`NotCapable`, or `PermissionDenied` on Deno). @example `isRefusal(e)` */
export function isRefusal(e: unknown, onDeno: boolean = isDeno()): boolean {
  const name = (e as { name?: string })?.name;
  return name === "NotCapable" || (name === "PermissionDenied" && onDeno);
}

/**
 * The flag, with its value, a Deno refusal message asks for: `Requires read access to "/x", run again
 * with the --allow-read flag` gives `--allow-read=/x`; `--allow-all` (Deno's answer for `/proc` and
 * `/sys`) and messages without a value give the bare flag; null when the message names none.
 *
 * @example `refusedFlag('Requires env access to "HOME", run again with the --allow-env flag') // "--allow-env=HOME"`
 */
export function refusedFlag(message: string): string | null {
  const flag = /--allow-[a-z]+/.exec(message)?.[0];
  if (!flag) return null;
  const value = /Requires [a-z]+ access to "([^"]*)"/.exec(message)?.[1];
  return value !== undefined && flag !== "--allow-all" ? `${flag}=${value}` : flag;
}

/**
 * A Deno permission refusal as a typed error that names the flag to grant (with the value from the
 * refusal's message when it has one, else `flag`), or null when `e` is something else.
 *
 * @example `throw permissionRefusal(e, "--allow-run", "running bwrap") ?? e`
 */
export function permissionRefusal(e: unknown, flag: string, what: string, onDeno: boolean = isDeno()): PermissionDeniedError | null {
  if (!isRefusal(e, onDeno)) return null;
  const fromMessage = refusedFlag(String((e as Error)?.message));
  const named = fromMessage?.includes("=") ? fromMessage : flag;
  return new PermissionDeniedError(`Deno refused ${what}: grant it with ${named}`, { cause: e, details: { flag: named } });
}

/**
 * Runs `fn` and turns a Deno permission refusal anywhere inside it into a
 * {@linkcode PermissionDeniedError} that names the flag and value from the refusal's message (or all
 * the flags the SDK needs).
 *
 * @example `await withHostPermissions(() => engine.create(spec))`
 */
export async function withHostPermissions<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw hostRefusal(e) ?? e;
  }
}

/**
 * A refusal as a {@linkcode PermissionDeniedError} naming the flag from its message, or null when `e`
 * is no refusal (a `PermissionDeniedError` is no refusal: it is typed already).
 *
 * @example `throw hostRefusal(e) ?? e`
 */
export function hostRefusal(e: unknown): PermissionDeniedError | null {
  if (e instanceof PermissionDeniedError) return null;
  const message = String((e as Error)?.message);
  const flag = refusedFlag(message) ?? DENO_FLAGS;
  return permissionRefusal(
    e,
    flag,
    `a host operation the sandbox needs (${message}); the SDK needs ${DENO_FLAGS} (or the scoped set in the README)`,
  );
}

function isDeno(): boolean {
  return (globalThis as Record<string, unknown>).Deno !== undefined;
}
