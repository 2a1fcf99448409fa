/**
 * Prints the milliseconds from `Sandbox.create()` to the end of a first command, in a process that has
 * never created a sandbox (no warm pool yet). Module loading is not counted. Used by local.bench.ts.
 *
 * @example
 * ```sh
 * bun bench/first-create.ts
 * ```
 * @module
 */
import { Sandbox } from "../mod.ts";

const t = performance.now();
const sb = await Sandbox.create();
await sb.commands.run(["true"]);
const d = performance.now() - t;
await sb.destroy();
console.log(d.toFixed(3));
