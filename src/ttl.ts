/**
 * TTL parsing with upstream's rules: `"30m"`, `"1h"`, `"3600s"`, `"3600"` or
 * an integer of seconds, from 1 s to 30 days. The default is 1800 s.
 *
 * @example A lease in seconds
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseTtl } from "@mvm/sdk";
 *
 * assert.equal(parseTtl("30m"), 1800);
 * ```
 * @module
 */
import { invalid } from "./errors.ts";

/**
 * Upstream's default TTL in seconds (30 minutes): a sandbox created without
 * `ttl` lives this long unless destroyed first.
 *
 * @example The default lease
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_TTL_SECONDS, parseTtl } from "@mvm/sdk";
 *
 * assert.equal(DEFAULT_TTL_SECONDS, 1800);
 * assert.equal(parseTtl(undefined), DEFAULT_TTL_SECONDS);
 * ```
 */
export const DEFAULT_TTL_SECONDS = 1800;
/** The longest TTL the SDK accepts: 30 days (2,592,000 s). */
export const MAX_TTL_SECONDS = 30 * 86400;

const RANGE = `a whole number of seconds from 1 to ${MAX_TTL_SECONDS.toLocaleString("en-US")} (30 days)`;

/**
 * Parses a TTL to whole seconds, 1 s to 30 days, or throws INVALID_INPUT
 * naming `field` and the range. `undefined` is the default, 1800.
 *
 * @example Spellings of a lease
 * ```ts
 * import assert from "node:assert/strict";
 * import { InvalidInputError, parseTtl } from "@mvm/sdk";
 *
 * assert.equal(parseTtl("30m"), 1800);
 * assert.equal(parseTtl("1h"), 3600);
 * assert.equal(parseTtl(90), 90);
 * assert.throws(() => parseTtl("soon"), (e: unknown) => e instanceof InvalidInputError && e.details.field === "ttl");
 * ```
 */
export function parseTtl(value: unknown, field = "ttl"): number {
  if (value === undefined) return DEFAULT_TTL_SECONDS;
  if (typeof value === "number") {
    if (!Number.isInteger(value) || value <= 0 || value > MAX_TTL_SECONDS) throw invalid(field, `must be ${RANGE}, got ${value}`);
    return value;
  }
  if (typeof value !== "string") throw invalid(field, 'must be a number of seconds or a string like "30m", "1h", "3600s"');
  const m = /^\s*(\d+)\s*([smhd]?)\s*$/.exec(value);
  if (!m) throw invalid(field, `cannot parse ${JSON.stringify(value)}: use "30m", "1h", "3600s", "3600" or a number of seconds`);
  const n = Number(m[1]) * ({ "": 1, s: 1, m: 60, h: 3600, d: 86400 } as Record<string, number>)[m[2]!]!;
  if (!Number.isInteger(n) || n <= 0 || n > MAX_TTL_SECONDS) throw invalid(field, `must be ${RANGE}, got ${JSON.stringify(value)}`);
  return n;
}
