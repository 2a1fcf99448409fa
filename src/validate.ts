/**
 * Input validation shared by every engine: argv, env, paths, resources. Each
 * failure is an INVALID_INPUT error that names the field.
 *
 * @example
 * ```ts
 * import { checkArgv } from "./validate.ts";
 * checkArgv(["python3", "-c", "print(1)"]); // ok
 * ```
 * @module
 */
import { invalid } from "./errors.ts";

/** The kernel's limit for one argument or environment string, its terminating NUL included (`MAX_ARG_STRLEN`, 32 pages). */
export const MAX_ARG_STRLEN = 131072;
/**
 * What the SDK lets one command's argv and environment (the sandbox's and the
 * command's) take together: 1 MiB, each string counted with its NUL and its
 * pointer as the kernel does. The kernel's own budget (`ARG_MAX`) is a quarter
 * of the stack limit, 2 MiB with the usual 8 MiB, and the engine's host-side
 * helpers carry the sandbox's environment too, so 1 MiB stays clear of it.
 */
export const ARG_ENV_BUDGET = 1024 * 1024;

/** Bytes of `s` in UTF-8 (what reaches the kernel), counted without encoding it. */
function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    // U+0080..U+07FF: 2 bytes; other BMP: 3; a surrogate pair: 4 (2 units × 2)
    if (c >= 0x80) n += c >= 0x800 && (c < 0xd800 || c > 0xdfff) ? 2 : 1;
  }
  return n;
}
/** 131072 → "131,072" */
function fmt(n: number): string {
  return n.toLocaleString("en-US", { maximumFractionDigits: 3 });
}

/** Checks a command line: a non-empty array of strings without NUL bytes. @example `checkArgv(["ls"])` */
export function checkArgv(argv: unknown, field = "argv"): string[] {
  if (!Array.isArray(argv)) throw invalid(field, 'must be an array of strings, e.g. ["python3", "main.py"]');
  if (argv.length === 0) throw invalid(field, "must not be empty: name the program to run");
  argv.forEach((a, i) => {
    if (typeof a !== "string") throw invalid(`${field}[${i}]`, `must be a string, got ${typeof a}`);
    if (a.includes("\0")) throw invalid(`${field}[${i}]`, "must not contain NUL bytes");
    const n = utf8Length(a) + 1;
    if (n > MAX_ARG_STRLEN) {
      throw invalid(
        `${field}[${i}]`,
        `is ${fmt(n - 1)} bytes; one argument may be at most ${fmt(MAX_ARG_STRLEN - 1)} bytes (the kernel's MAX_ARG_STRLEN, ` +
          `${fmt(MAX_ARG_STRLEN)}, counts the terminating NUL): pass large data through stdin or a file`,
      );
    }
  });
  if (argv[0] === "") throw invalid(`${field}[0]`, "must not be empty");
  return [...argv];
}

const DENIED_ENV = [
  /^LD_/,
  /^DYLD_/,
  /^NODE_OPTIONS$/,
  /^NODE_PATH$/,
  /^PYTHONSTARTUP$/,
  /^PYTHONPATH$/,
  /^PERL5OPT$/,
  /^PERL5LIB$/,
  /^RUBYOPT$/,
  /^BASH_ENV$/,
  /^ENV$/,
  /^JAVA_TOOL_OPTIONS$/,
  /^_JAVA_OPTIONS$/,
  /^GCONV_PATH$/,
];
const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Checks an env map: names are identifiers, values strings, loader hooks refused. @example `checkEnv({ A: "1" })` */
export function checkEnv(env: unknown, field = "env"): Record<string, string> {
  if (env === undefined) return {};
  if (env === null || typeof env !== "object" || Array.isArray(env)) throw invalid(field, "must be an object of NAME: value strings");
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env as Record<string, unknown>)) {
    if (!ENV_NAME_RE.test(k)) throw invalid(`${field}.${k}`, "is not a valid environment variable name");
    if (DENIED_ENV.some((re) => re.test(k))) {
      throw invalid(
        `${field}.${k}`,
        "is a loader/interpreter hook and is refused for guest processes (upstream's env deny-list: LD_*, NODE_OPTIONS, …)",
      );
    }
    if (typeof v !== "string") throw invalid(`${field}.${k}`, `must be a string, got ${typeof v}`);
    if (v.includes("\0")) throw invalid(`${field}.${k}`, "must not contain NUL bytes");
    const n = utf8Length(k) + 1 + utf8Length(v) + 1;
    if (n > MAX_ARG_STRLEN) {
      throw invalid(
        `${field}.${k}`,
        `is ${fmt(utf8Length(v))} bytes; one environment string (NAME=value and its NUL) may be at most ${fmt(MAX_ARG_STRLEN)} bytes ` +
          `(the kernel's MAX_ARG_STRLEN), so this value may be at most ${fmt(MAX_ARG_STRLEN - utf8Length(k) - 2)} bytes: ` +
          `pass large data through stdin or a file`,
      );
    }
    out[k] = v;
  }
  return out;
}

/** Checks a guest path: a non-empty string without NUL bytes, at most 4096 bytes. @example `checkPath("/app/main.py")` */
export function checkPath(path: unknown, field = "path"): string {
  if (typeof path !== "string") throw invalid(field, `must be a string, got ${typeof path}`);
  if (path.length === 0) throw invalid(field, "must not be empty");
  if (path.includes("\0")) throw invalid(field, "must not contain NUL bytes");
  if (new TextEncoder().encode(path).length > 4096) throw invalid(field, "is longer than 4096 bytes (PATH_MAX)");
  return path;
}

/** Checks an optional `AbortSignal`. @example `checkSignal(AbortSignal.timeout(5000))` */
export function checkSignal(signal: unknown, field = "signal"): AbortSignal | undefined {
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalid(field, "must be an AbortSignal");
  return signal;
}

/** Checks an optional positive number. @example `checkPositive(2, "cpu")` */
export function checkPositive(v: unknown, field: string, integer = false): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) {
    throw invalid(field, `must be a positive ${integer ? "whole " : ""}number, got ${String(v)}`);
  }
  return v;
}

/** Checks a string-to-string map such as tags. @example `checkStringMap({ team: "x" }, "tags")` */
export function checkStringMap(v: unknown, field: string): Record<string, string> {
  if (v === undefined) return {};
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw invalid(field, "must be an object of string values");
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    if (typeof x !== "string") throw invalid(`${field}.${k}`, `must be a string, got ${typeof x}`);
  }
  return { ...(v as Record<string, string>) };
}

/**
 * Checks an optional number against an inclusive range; the message gives the
 * range. @example `checkRange(0.5, "cpu", { min: 0.01, max: 1024 })`
 */
export function checkRange(
  v: unknown,
  field: string,
  range: { min?: number; max: number; minExclusive?: boolean; integer?: boolean; unit?: string; why?: string },
): number | undefined {
  if (v === undefined) return undefined;
  const { min = 0, max, minExclusive = false, integer = false, unit = "" } = range;
  const u = unit ? ` ${unit}` : "";
  const lower = minExclusive ? `more than ${fmt(min)}` : `at least ${fmt(min)}`;
  const want = `must be ${integer ? "a whole number" : "a number"}${u ? ` of${u}` : ""}, ${lower} and at most ${fmt(max)}${
    range.why ? ` (${range.why})` : ""
  }`;
  const got = typeof v === "number" ? String(v) : typeof v === "string" ? JSON.stringify(v) : typeof v;
  if (typeof v !== "number" || !Number.isFinite(v) || (integer && !Number.isInteger(v))) throw invalid(field, `${want}, got ${got}`);
  if (minExclusive ? v <= min : v < min) throw invalid(field, `${want}, got ${got}`);
  if (v > max) throw invalid(field, `${want}, got ${got}`);
  return v;
}

/** What an environment takes of the kernel's budget: each `NAME=value` with its NUL and its pointer. @example `envBytes({ A: "1" }) // 12` */
export function envBytes(env: Record<string, string>): number {
  let n = 0;
  for (const [k, v] of Object.entries(env)) n += utf8Length(k) + 1 + utf8Length(v) + 1 + 8;
  return n;
}

/**
 * Checks that one command's argv and environment fit {@linkcode ARG_ENV_BUDGET}
 * (each string counted with its NUL and its pointer, as the kernel does);
 * `baseEnvBytes` is the sandbox's own environment ({@linkcode envBytes}). The
 * error names whichever of `argv` and `env` is larger.
 *
 * @example `checkArgEnvBudget(["ls"], { A: "1" })`
 */
export function checkArgEnvBudget(argv: string[], env: Record<string, string>, baseEnvBytes = 0): void {
  const argvBytes = argv.reduce((n, a) => n + utf8Length(a) + 1 + 8, 0);
  const envTotal = baseEnvBytes + envBytes(env);
  if (argvBytes + envTotal <= ARG_ENV_BUDGET) return;
  const field = argvBytes >= envTotal ? "argv" : "env";
  const e = invalid(
    field,
    `argv and environment take ${fmt(argvBytes + envTotal)} bytes together (argv ${fmt(argvBytes)}, environment ${fmt(envTotal)} ` +
      `with the sandbox's own); one command may have at most ${fmt(ARG_ENV_BUDGET)} (1 MiB), which keeps it well under the ` +
      `kernel's ARG_MAX: pass large data through stdin or a file`,
  );
  Object.assign(e.details, { argvBytes, envBytes: envTotal, budget: ARG_ENV_BUDGET });
  throw e;
}

/** The id shapes engines hand out: `sbx-` and 12 of [a-z0-9] (local), `rec-<workloadId>` (record). */
/** A sandbox name: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit. */
export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

const SANDBOX_ID_RE = /^(sbx-[a-z0-9]{12}|rec-[A-Za-z0-9][A-Za-z0-9._-]{0,63})$/;

/**
 * Checks that `id` has the shape of a sandbox id, so a malformed one is
 * INVALID_INPUT while a well-formed unknown one is the engine's NOT_FOUND.
 * @example `checkSandboxId("sbx-3k9x0a7q2m1z")`
 */
export function checkSandboxId(id: unknown, field = "id"): string {
  if (typeof id !== "string") {
    throw invalid(field, `must be a sandbox id string such as "sbx-3k9x0a7q2m1z", got ${id === null ? "null" : typeof id}`);
  }
  if (!SANDBOX_ID_RE.test(id)) {
    const shown = id.length > 80 ? `${JSON.stringify(id.slice(0, 80))}…` : JSON.stringify(id);
    throw invalid(field, `${shown} is not a sandbox id: ids look like "sbx-" and 12 lowercase letters or digits, e.g. "sbx-3k9x0a7q2m1z"`);
  }
  return id;
}

/**
 * A guest path with "." and ".." resolved by name against the sandbox's
 * working directory `/` (no symlinks are followed). @example `lexicalPath("app/../x/.") // "/x"`
 */
export function lexicalPath(path: string): string {
  const out: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") out.pop();
    else out.push(part);
  }
  return "/" + out.join("/");
}

/**
 * Checks a path that an operation removes or moves: not the sandbox's root
 * (`/`, `.`, `/app/..`), and not ending in "." or "..".
 * @example `checkMovablePath("/app/old", "path", "removed")`
 */
export function checkMovablePath(path: unknown, field: string, what: "removed" | "renamed" | "replaced"): string {
  const p = checkPath(path, field);
  if (lexicalPath(p) === "/") {
    throw invalid(
      field,
      `${JSON.stringify(p)} is the sandbox's root directory, which cannot be ${what}; ` +
        `name what is in it instead (files.list("/") lists it)`,
    );
  }
  const last = p.replace(/\/+$/, "").split("/").pop();
  if (last === "." || last === "..") {
    throw invalid(field, `${JSON.stringify(p)} ends in "${last}", which cannot be ${what}; name the directory itself, e.g. "/app"`);
  }
  return p;
}

/** Snapshot ids: `snap-` and 12 of [a-z0-9]. */
export const SNAPSHOT_ID_RE: RegExp = /^snap-[a-z0-9]{12}$/;

/** Checks a snapshot id (or the id of a {@linkcode SnapshotInfo}). @example `snapshotId("snap-000000000000")` */
export function snapshotId(v: unknown, field = "snapshot"): string {
  const id = typeof v === "object" && v !== null ? (v as { id?: unknown }).id : v;
  if (typeof id !== "string" || !SNAPSHOT_ID_RE.test(id)) {
    throw invalid(field, "must be a snapshot id (snap- and 12 of a-z, 0-9) or a SnapshotInfo");
  }
  return id;
}
