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

/** Checks a command line: a non-empty array of strings without NUL bytes. @example `checkArgv(["ls"])` */
export function checkArgv(argv: unknown, field = "argv"): string[] {
  if (!Array.isArray(argv)) throw invalid(field, 'must be an array of strings, e.g. ["python3", "main.py"]');
  if (argv.length === 0) throw invalid(field, "must not be empty: name the program to run");
  argv.forEach((a, i) => {
    if (typeof a !== "string") throw invalid(`${field}[${i}]`, `must be a string, got ${typeof a}`);
    if (a.includes("\0")) throw invalid(`${field}[${i}]`, "must not contain NUL bytes");
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
