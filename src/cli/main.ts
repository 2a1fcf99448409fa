/**
 * The command line's dispatcher: the verb table, `help` for every verb, `--version`, and the one
 * error rule: a failure is one line on stderr, `mvm: CODE: message` (CODE being the SDK's stable
 * error code), and a non-zero exit: 2 for a usage error, 1 for the rest (255 for `machine` verbs,
 * whose other exit codes belong to guest processes).
 *
 * @example
 * ```ts
 * import { errorLine } from "./main.ts";
 * import { NotFoundError } from "../errors.ts";
 * console.log(errorLine(new NotFoundError("no live sandbox sbx-000000000000"))); // "mvm: NOT_FOUND: no live sandbox sbx-000000000000"
 * ```
 * @module
 */
import { SandboxError } from "../errors.ts";
import { parseArgs } from "./args.ts";
import { COMMON_FLAGS, PEOPLE_VERBS, type Verb } from "./people.ts";
import { print, printErr } from "./io.ts";
import { machineVerb } from "./machine.ts";

/** The CLI's version: the package's. */
export const VERSION = "0.1.0";

/** What `--version` prints: the `mvmctl X.Y.Z` shape, since the `machine` group speaks its verbs. */
export const VERSION_LINE = `mvmctl ${VERSION} (@mvm/sdk command line; machine verbs over the SDK's engines)`;

/** The verbs in the order help lists them. */
function verbs(): Record<string, Verb> {
  return { ...PEOPLE_VERBS, machine: machineVerb };
}

/** The whole help text. */
export function overview(): string {
  const lines = Object.entries(verbs()).map(([n, v]) => `  ${n.padEnd(8)} ${v.summary}`);
  return [
    "mvm — sandboxes for code nobody has reviewed (the @mvm/sdk command line)",
    "",
    "usage: mvm VERB [ARGS]   (mvm help VERB, or mvm VERB --help, for a verb's flags)",
    "",
    ...lines,
    "",
    "Every verb takes --engine local|mvmctl (default local; MVM_SDK_MODE=live with MVM_CLI_BIN picks mvmctl).",
    "The local engine keeps its sandboxes under $MVM_STATE_DIR.",
    "",
  ].join("\n");
}

/** One line for an error: `mvm: CODE: message`. @example `errorLine(e)` */
export function errorLine(e: unknown): string {
  const code = e instanceof SandboxError ? e.code : "INTERNAL";
  const msg = e instanceof Error ? e.message : String(e);
  return `mvm: ${code}: ${msg.replace(/\s*\n\s*/g, " ")}`;
}

/** Runs the command line on `args`; resolves to the exit code. @example `await main(["ls", "--json"])` */
export async function main(args: readonly string[]): Promise<number> {
  const [verb, ...rest] = args;
  if (verb === undefined || verb === "help" && rest.length === 0 || verb === "--help" || verb === "-h") {
    await print(overview());
    return verb === undefined ? 2 : 0;
  }
  if (verb === "--version" || verb === "version") {
    await print(VERSION_LINE + "\n");
    return 0;
  }
  const all = verbs();
  if (verb === "help") {
    const v = all[rest[0]!];
    if (!v) {
      await printErr(`mvm: INVALID_INPUT: no verb ${JSON.stringify(rest[0])}; mvm help lists them\n`);
      return 2;
    }
    await print(`${v.summary}\n\n${v.help}\n`);
    return 0;
  }
  const v = all[verb];
  if (!v) {
    await printErr(`mvm: INVALID_INPUT: no verb ${JSON.stringify(verb)}; mvm help lists them\n`);
    return 2;
  }
  try {
    if (v.raw) {
      if (rest.length === 0 || rest[0] === "--help" || rest[0] === "-h") {
        await print(`${v.summary}\n\n${v.help}\n`);
        return rest.length === 0 ? 2 : 0;
      }
      return await v.raw(rest);
    }
    const parsed = parseArgs(rest, { ...COMMON_FLAGS, ...v.flags });
    if (parsed.flags.help) {
      await print(`${v.summary}\n\n${v.help}\n`);
      return 0;
    }
    return await v.run(parsed);
  } catch (e) {
    await printErr(errorLine(e) + (isUsage(e) ? `  (mvm help ${verb})` : "") + "\n");
    return isUsage(e) ? 2 : verb === "machine" ? 255 : 1;
  }
}

function isUsage(e: unknown): boolean {
  return e instanceof SandboxError && e.code === "INVALID_INPUT" && e.details.field === "argv";
}
