/**
 * Which runtime this code runs on, decided once: the first call of
 * {@linkcode runtime} picks the shim and every later call returns the same one.
 *
 * @example The runtime's name
 * ```ts
 * import assert from "node:assert/strict";
 * import { detectRuntime, runtime } from "./detect.ts";
 * assert.equal(runtime().name, detectRuntime());
 * assert.equal(runtime(), runtime());
 * ```
 * @module
 */
import type { Runtime, RuntimeName } from "./types.ts";
import { denoRuntime } from "./deno.ts";
import { bunRuntime } from "./bun.ts";
import { nodeRuntime } from "./node.ts";

const SHIMS: Record<RuntimeName, Runtime> = { deno: denoRuntime, bun: bunRuntime, node: nodeRuntime };

/**
 * The runtime the given globals belong to: Deno when `Deno.Command` exists,
 * else Bun when `Bun` does, else Node.
 *
 * @example `detectRuntime({ Bun: {} }) // "bun"`
 */
export function detectRuntime(globals: object = globalThis): RuntimeName {
  const g = globals as { Deno?: { Command?: unknown }; Bun?: unknown };
  if (g.Deno !== undefined && g.Deno.Command) return "deno";
  if (g.Bun !== undefined) return "bun";
  return "node";
}

let current: Runtime | undefined;
/** The shim of the runtime we are on, detected on the first call. @example `runtime().name // "deno" | "bun" | "node"` */
export function runtime(): Runtime {
  return current ??= SHIMS[detectRuntime()];
}
