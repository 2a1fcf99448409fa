/**
 * The argv of every `mvmctl machine …` verb the mvmctl engine speaks, built by pure functions so
 * the engine, the argv fixtures (`tests/fixtures/machine/*.argv`, one argument per line, the shape
 * upstream keeps in `sdks/machine-fixtures/`) and our own CLI's parser agree on one spelling.
 *
 * @example The boot verb
 * ```ts
 * import assert from "node:assert/strict";
 * import { machineArgv } from "./argv.ts";
 * assert.deepEqual(
 *   machineArgv.run({ name: "web", image: "host", ttlSeconds: 60, allowHosts: [], tags: {} }),
 *   ["machine", "run", "-d", "--up-json", "--name", "web", "--image", "host", "--ttl", "60s"],
 * );
 * ```
 * @module
 */

import { SIGNALS } from "../../signals.ts";

/** What `machine run` takes. */
export interface RunArgs {
  name: string;
  /** `--manifest T` (an upstream template) … */
  template?: string | undefined;
  /** … or `--image I`. */
  image?: string | undefined;
  ttlSeconds: number;
  /** `host:port`, one `--allow-host` each. */
  allowHosts: string[];
  /** One `--tag k=v` each (sorted). */
  tags: Record<string, string>;
}

const sortedPairs = (m: Record<string, string>) => Object.keys(m).sort().map((k) => `${k}=${m[k]}`);

/** Every verb's argv (without the binary). @example `machineArgv.ls({})` */
export const machineArgv = {
  version: (): string[] => ["--version"],
  run(a: RunArgs): string[] {
    const out = ["machine", "run", "-d", "--up-json", "--name", a.name];
    if (a.template !== undefined) out.push("--manifest", a.template);
    else out.push("--image", a.image ?? "host");
    for (const h of a.allowHosts) out.push("--allow-host", h);
    for (const t of sortedPairs(a.tags)) out.push("--tag", t);
    out.push("--ttl", `${a.ttlSeconds}s`);
    return out;
  },
  ls(tags: Record<string, string> = {}): string[] {
    const out = ["machine", "ls", "--json"];
    for (const t of sortedPairs(tags)) out.push("--tag", t);
    return out;
  },
  procStart(vm: string, argv: string[], o: { env: Record<string, string>; cwd?: string | undefined }): string[] {
    const out = ["machine", "proc", "start", vm];
    for (const e of sortedPairs(o.env)) out.push("-e", e);
    if (o.cwd !== undefined) out.push("--cwd", o.cwd);
    return [...out, "--", ...argv];
  },
  procWait: (
    vm: string,
    token: string,
    timeoutSeconds?: number,
  ): string[] => ["machine", "proc", "wait", vm, token, ...(timeoutSeconds !== undefined ? ["--timeout", String(timeoutSeconds)] : [])],
  procStdin: (vm: string, token: string): string[] => ["machine", "proc", "stdin", vm, token],
  procSignal: (vm: string, token: string, signum: number): string[] => ["machine", "proc", "signal", vm, token, String(signum)],
  procKill: (vm: string, token: string): string[] => ["machine", "proc", "kill", vm, token],
  fsWrite: (
    vm: string,
    path: string,
    o: { mode: number; createParents: boolean },
  ): string[] => ["machine", "fs", "write", vm, path, "--mode", String(o.mode), ...(o.createParents ? ["--create-parents"] : [])],
  fsRead: (
    vm: string,
    path: string,
    offset: number,
    length: number,
  ): string[] => ["machine", "fs", "read", vm, path, "--offset", String(offset), "--length", String(length)],
  fsLs: (vm: string, path: string): string[] => ["machine", "fs", "ls", vm, path, "--json"],
  fsStat: (
    vm: string,
    path: string,
    follow = false,
  ): string[] => ["machine", "fs", "stat", vm, path, "--json", ...(follow ? [] : ["--no-follow"])],
  fsMkdir: (
    vm: string,
    path: string,
    o: { mode: number; parents: boolean },
  ): string[] => ["machine", "fs", "mkdir", vm, path, "--mode", String(o.mode), ...(o.parents ? ["--parents"] : [])],
  fsRm: (
    vm: string,
    path: string,
    recursive: boolean,
  ): string[] => ["machine", "fs", "rm", vm, path, ...(recursive ? ["--recursive"] : [])],
  fsMv: (vm: string, from: string, to: string): string[] => ["machine", "fs", "mv", vm, from, to],
  logs: (vm: string, follow: boolean): string[] => ["machine", "logs", vm, ...(follow ? ["--follow"] : []), "--lines", "100"],
  stop: (vm: string): string[] => ["machine", "stop", vm, "--yes"],
  rm: (vm: string): string[] => ["machine", "rm", vm, "--force"],
  pause: (vm: string): string[] => ["machine", "pause", vm],
  resume: (vm: string): string[] => ["machine", "resume", vm],
  setTtl: (vm: string, seconds: number): string[] => ["machine", "set-ttl", vm, `${seconds}s`],
  /** `fs_quick` is spelled `fs-quick` on the command line, `vm_full` `vm-full`. */
  checkpointCreate: (vm: string, cls: "fs_quick" | "vm_full", tag?: string): string[] => [
    "machine",
    "checkpoint",
    "create",
    vm,
    "--class",
    cls.replace("_", "-"),
    ...(tag !== undefined ? ["--tag", tag] : []),
    "--json",
  ],
  checkpointLs: (): string[] => ["machine", "checkpoint", "ls", "--json"],
  checkpointRm: (id: string): string[] => ["machine", "checkpoint", "rm", id],
  checkpointFork: (id: string, newId: string): string[] => ["machine", "checkpoint", "fork", id, "--new-id", newId, "--boot"],
} as const;

/** Linux signal numbers by name, for `proc signal` (the one table, in src/signals.ts). */
export { SIGNALS };

/** The name of a signal number (`SIG9` for one without a name here). @example `signalName(9) // "SIGKILL"` */
export function signalName(n: number): string {
  return Object.entries(SIGNALS).find(([, v]) => v === n)?.[0] ?? `SIG${n}`;
}
