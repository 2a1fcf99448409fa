/**
 * Deno's permission refusals as typed errors that name the flag to grant. On
 * Bun and Node nothing is ever refused, so these pass errors through.
 *
 * @example A refusal names its flag
 * ```ts
 * import assert from "node:assert/strict";
 * import { PermissionDeniedError } from "../errors.ts";
 * import { permissionRefusal } from "./permissions.ts";
 * const refusal = Object.assign(new Error("Requires run access"), { name: "NotCapable" });
 * const e = permissionRefusal(refusal, "--allow-run", "running bwrap");
 * assert.ok(e instanceof PermissionDeniedError);
 * assert.equal(e.details.flag, "--allow-run");
 * ```
 * @module
 */
import { PermissionDeniedError } from "../errors.ts";

/** Every flag the SDK needs on Deno. */
export const DENO_FLAGS = "--allow-run --allow-read --allow-write --allow-env";

/**
 * A Deno permission refusal (`NotCapable`, or `PermissionDenied` on Deno) as a
 * typed error that names the flag to grant, or null when `e` is something else.
 *
 * @example `throw permissionRefusal(e, "--allow-run", "running bwrap") ?? e`
 */
export function permissionRefusal(e: unknown, flag: string, what: string, onDeno: boolean = isDeno()): PermissionDeniedError | null {
  const name = (e as { name?: string })?.name;
  if (name !== "NotCapable" && !(name === "PermissionDenied" && onDeno)) return null;
  return new PermissionDeniedError(`Deno refused ${what}: grant it with ${flag}`, { cause: e, details: { flag } });
}

/**
 * Runs `fn` and turns a Deno permission refusal anywhere inside it into a
 * {@linkcode PermissionDeniedError} that names the flag from the refusal's
 * message (or all the flags the SDK needs).
 *
 * @example `await withHostPermissions(() => engine.create(spec))`
 */
export async function withHostPermissions<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof PermissionDeniedError) throw e;
    const message = (e as Error)?.message;
    const flag = /--allow-[a-z]+/.exec(String(message))?.[0] ?? DENO_FLAGS;
    throw permissionRefusal(e, flag, `a host operation the sandbox needs (${message}); the SDK needs ${DENO_FLAGS}`) ?? e;
  }
}

function isDeno(): boolean {
  return (globalThis as Record<string, unknown>).Deno !== undefined;
}
