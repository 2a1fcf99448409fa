/**
 * The command line's argument parser: long flags (`--name v`, `--name=v`), short ones (`-e K=V`,
 * bundled booleans `-it`), repeatable flags, positionals, and `--` after which everything is a
 * positional. An unknown flag, a missing value or a wrong count of positionals is a usage error
 * (INVALID_INPUT) that names it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseArgs } from "./args.ts";
 * const a = parseArgs(["--json", "--tag", "a=1", "x"], { json: { kind: "bool" }, tag: { kind: "list" } });
 * assert.deepEqual([a.flags.json, a.flags.tag, a.positionals], [true, ["a=1"], ["x"]]);
 * ```
 * @module
 */
import { InvalidInputError } from "../errors.ts";

/** How a flag is spelled and what it takes. */
export interface FlagSpec {
  /** `bool` takes no value; `string` one; `list` one per use, collected. */
  kind: "bool" | "string" | "list";
  /** A one-letter spelling (`-e`). */
  short?: string;
}

/** What a parse found. */
export interface Parsed {
  flags: Record<string, boolean | string | string[] | undefined>;
  positionals: string[];
  /** Whether a `--` was given (what follows it is in `positionals` after `dashAt`). */
  dashAt: number | null;
}

/** A usage error naming what was wrong. @example `throw usage("ls takes no arguments")` */
export function usage(message: string): InvalidInputError {
  return new InvalidInputError(message, { details: { field: "argv" } });
}

/** Parses `args` by `spec`. @example `parseArgs(["-it", "x"], { i: { kind: "bool" }, t: { kind: "bool" } })` */
export function parseArgs(args: readonly string[], spec: Record<string, FlagSpec>): Parsed {
  const flags: Parsed["flags"] = {};
  const positionals: string[] = [];
  const byShort = new Map(Object.entries(spec).flatMap(([k, f]) => f.short ? [[f.short, k] as const] : []));
  const set = (name: string, value: string | true) => {
    const f = spec[name]!;
    if (f.kind === "list") (flags[name] = (flags[name] as string[] | undefined) ?? []).push(value as string);
    else if (flags[name] !== undefined && f.kind === "string") throw usage(`--${name} given twice`);
    else flags[name] = value;
  };
  let dashAt: number | null = null;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") {
      dashAt = positionals.length;
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (a.startsWith("--") && a.length > 2) {
      const eq = a.indexOf("=");
      const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
      const f = spec[name];
      if (!f) throw usage(`unknown flag --${name}`);
      if (f.kind === "bool") {
        if (eq > 0) throw usage(`--${name} takes no value`);
        set(name, true);
      } else if (eq > 0) set(name, a.slice(eq + 1));
      else {
        if (i + 1 >= args.length) throw usage(`--${name} needs a value`);
        set(name, args[++i]!);
      }
      continue;
    }
    if (a.startsWith("-") && a.length > 1 && !/^-\d/.test(a)) {
      const letters = a.slice(1);
      for (let j = 0; j < letters.length; j++) {
        const name = byShort.get(letters[j]!);
        if (!name) throw usage(`unknown flag -${letters[j]}`);
        const f = spec[name]!;
        if (f.kind === "bool") {
          set(name, true);
          continue;
        }
        const rest = letters.slice(j + 1);
        if (rest) set(name, rest);
        else {
          if (i + 1 >= args.length) throw usage(`-${letters[j]} needs a value`);
          set(name, args[++i]!);
        }
        break;
      }
      continue;
    }
    positionals.push(a);
  }
  return { flags, positionals, dashAt };
}

/** `k=v` strings as a map; a string without `=` is a usage error naming the flag. @example `pairs(["a=1"], "--tag")` */
export function pairs(list: string[] | undefined, flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of list ?? []) {
    const eq = p.indexOf("=");
    if (eq <= 0) throw usage(`${flag} takes KEY=VALUE, got ${JSON.stringify(p)}`);
    out[p.slice(0, eq)] = p.slice(eq + 1);
  }
  return out;
}

/** A flag's value as a number, or a usage error naming it. @example `num("3", "--cpu")` */
export function num(v: unknown, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== "string" || v.trim() === "" || !Number.isFinite(n)) throw usage(`${flag} takes a number, got ${JSON.stringify(v)}`);
  return n;
}
