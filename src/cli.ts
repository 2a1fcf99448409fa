#!/usr/bin/env node
/**
 * The `mvm` command line: `deno task cli …`, `deno run -A jsr:@mvm/sdk/cli …`, or `mvm …` from
 * the npm package's `bin`. `mvm help` lists the verbs; `mvm help VERB` gives each one's flags.
 *
 * @example
 * ```sh
 * deno task cli ls
 * deno task cli exec sbx-3k9x0a7q2m1z -- python3 -c 'print(1)'
 * ```
 * @module
 */
import process from "node:process";
import { main } from "./cli/main.ts";
import { exitWith } from "./cli/io.ts";

await exitWith(await main(process.argv.slice(2)));
