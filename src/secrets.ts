/**
 * Resolving a sandbox's secrets on the host, at create: each `SecretRef`'s value is read from its
 * source (an environment variable, a file, or the caller's function), checked, registered for
 * redaction, and paired with a fresh placeholder (`mvm-secret-` and 48 hex digits, upstream's
 * form) that the guest sees instead. A missing secret is a `NotFoundError` naming it and where it
 * looked — never a value.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SecretRef } from "./policy.ts";
 * import { newPlaceholder, resolveSecrets } from "./secrets.ts";
 *
 * const [s] = await resolveSecrets({ TOKEN: SecretRef.from("t", { hosts: ["api.test"], from: () => "value-of-the-token" }) }, []);
 * assert.equal(s!.value, "value-of-the-token");
 * assert.match(s!.placeholder, /^mvm-secret-[0-9a-f]{48}$/);
 * assert.match(newPlaceholder(), /^mvm-secret-[0-9a-f]{48}$/);
 * ```
 * @module
 */
import { readFileSync } from "node:fs";
import { InvalidInputError, NotFoundError, SandboxError, UnsupportedError } from "./errors.ts";
import type { SecretAuthType, SecretRef, SecretSource } from "./policy.ts";
import { registerSecret } from "./redact.ts";
import { getEnv } from "./runtime/mod.ts";

/** Upstream's placeholder form: `mvm-secret-` and 24 random bytes in hex. */
export const PLACEHOLDER_RE: RegExp = /^mvm-secret-[0-9a-f]{48}$/;

/** A secret of a sandbox, resolved: never serialised (the state keeps only {@linkcode secretBinding}). */
export interface ResolvedSecret {
  /** The guest environment variable it is given under. */
  key: string;
  name: string;
  type: SecretAuthType;
  /** Hosts it is bound to (the ref's, or the sandbox's allowlisted hosts when it names none). */
  hosts: string[];
  placeholder: string;
  value: string;
  exposeToGuest: boolean;
  /** Where it came from: `env:NAME`, `file:/path` or `resolver`. */
  source: string;
}

/** Bytes as lowercase hex. @example `toHex(new Uint8Array([1, 255])) // "01ff"` */
export function toHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** A fresh placeholder. @example `newPlaceholder() // "mvm-secret-3f…"` */
export function newPlaceholder(): string {
  return "mvm-secret-" + toHex(crypto.getRandomValues(new Uint8Array(24)));
}

function describe(from: SecretSource): string {
  return typeof from === "function" ? "resolver" : "env" in from ? `env:${from.env}` : `file:${from.file}`;
}

function where(source: string): string {
  if (source === "resolver") return "the resolver function passed as `from`";
  if (source.startsWith("env:")) return `the environment variable ${source.slice(4)}`;
  return `the file ${source.slice(5)}`;
}

/** Reads one value from its source; a message naming the secret and the source when it cannot. */
async function read(key: string, ref: SecretRef, source: string): Promise<string> {
  const field = `secrets.${key}`;
  const missing = (why: string, cause?: unknown) =>
    new NotFoundError(
      `secret ${JSON.stringify(ref.name)} (${field}) was not found: ${why}; ` +
        `provide it there, or pass SecretRef.from(name, { from: { env } | { file } | resolver })`,
      { details: { field, secret: ref.name, source }, ...(cause !== undefined ? { cause } : {}) },
    );
  const f = ref.from;
  let v: unknown;
  if (typeof f === "function") {
    try {
      v = await f(ref.name);
    } catch (e) {
      if (e instanceof SandboxError) throw e;
      throw missing(`${where(source)} threw (${e instanceof Error ? e.name : typeof e})`, e);
    }
    if (typeof v !== "string") throw missing(`${where(source)} returned ${v === null ? "null" : typeof v}, not a string`);
  } else if ("env" in f) {
    v = getEnv(f.env);
    if (v === undefined || v === "") throw missing(`${where(source)} is not set (or empty) in this process`);
  } else {
    try {
      v = readFileSync(f.file, "utf8").replace(/\r?\n$/, "");
    } catch (e) {
      const code = (e as { code?: string }).code ?? "error";
      if (
        code === "EACCES" || code === "EPERM" || code === "ERR_PERMISSION_DENIED" ||
        ["PermissionDenied", "NotCapable"].includes((e as Error).name)
      ) {
        throw missing(`${where(source)} cannot be read by this process (${code}; under Deno, --allow-read must cover it)`);
      }
      throw missing(`${where(source)} could not be read (${code})`);
    }
  }
  const value = v as string;
  if (/[\r\n\0]/.test(value)) {
    throw new InvalidInputError(
      `secret ${JSON.stringify(ref.name)} (${field}): its value holds a line break or NUL, which no header may carry`,
      {
        details: { field, secret: ref.name, source },
      },
    );
  }
  if (value.length < 8 || value.length > 16384) {
    throw new InvalidInputError(
      `secret ${JSON.stringify(ref.name)} (${field}): its value must be 8 to 16384 characters long ` +
        `(shorter values could not be told apart from ordinary text when logs and errors are redacted)`,
      { details: { field, secret: ref.name, source } },
    );
  }
  return value;
}

/**
 * Resolves every secret of a create, in order, before anything of the sandbox starts; each value is
 * registered for redaction at once. `allowed` are the network policy's hosts, the binding of a
 * secret that names none. @example `await resolveSecrets(spec.secrets, spec.network.hosts)`
 */
export async function resolveSecrets(secrets: Record<string, SecretRef>, allowed: readonly string[]): Promise<ResolvedSecret[]> {
  const out: ResolvedSecret[] = [];
  for (const [key, ref] of Object.entries(secrets)) {
    if (ref.type === "hmac" || ref.type === "sigv4") {
      throw new UnsupportedError(
        `secret ${JSON.stringify(ref.name)} (secrets.${key}) is of type ${ref.type}: re-signing requests (upstream's hmac/sigv4) ` +
          `is a later step of the egress proxy; use type "bearer" or "basic" (a header the proxy fills in), or give the guest the ` +
          `value with exposeToGuest: true and sign in the guest's own code`,
        { details: { field: `secrets.${key}.type`, secret: ref.name } },
      );
    }
    const source = describe(ref.from);
    const value = await read(key, ref, source);
    registerSecret(value);
    out.push({
      key,
      name: ref.name,
      type: ref.type,
      hosts: ref.hosts.length > 0 ? [...ref.hosts] : [...allowed],
      placeholder: newPlaceholder(),
      value,
      exposeToGuest: ref.exposeToGuest,
      source,
    });
  }
  return out;
}

/** What the state may keep of a resolved secret: everything but its value. @example `secretBinding(s)` */
export function secretBinding(s: ResolvedSecret): Omit<ResolvedSecret, "value"> {
  const { value: _, ...rest } = s;
  return rest;
}
