/**
 * The runtime shim: one {@linkcode Runtime} interface (spawn with Web
 * Streams) implemented for Deno, Bun and Node, picked once for the runtime
 * this code runs on, plus the host helpers the engines need. Files:
 * `types.ts` (the interface), `detect.ts` (which runtime), `deno.ts`,
 * `bun.ts`, `node.ts` (one shim each), `spawn.ts` (what the shims share,
 * abort wiring included), `permissions.ts` (Deno refusals as typed errors),
 * `host.ts` (env, uid, pid, platform, exit hooks).
 *
 * @example Running a host binary on any runtime
 * ```ts
 * import assert from "node:assert/strict";
 * import { runtime } from "./mod.ts";
 * const child = await runtime().spawn("uname", ["-s"]);
 * assert.equal(await new Response(child.stdout).text(), "Linux\n");
 * ```
 * @module
 */
export type { ChildProcess, ExitStatus, FileLock, HostTerminal, Runtime, RuntimeName, SpawnOptions, Stdio } from "./types.ts";
export { detectRuntime, runtime } from "./detect.ts";
export { getEnv, hostFileExists, hostPid, hostPlatform, hostUid, onExit, pidExists, scriptArgv } from "./host.ts";
export { hostRefusal, isRefusal, permissionRefusal, refusedFlag, SDK_ENV, withHostPermissions } from "./permissions.ts";
