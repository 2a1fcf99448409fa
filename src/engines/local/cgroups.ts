/**
 * Cgroups for the local engine: limits (memory, cpu, pids) and per-process
 * groups that can be killed as a whole. Cgroup v2 where the controllers are
 * there; v1 controllers where they are not (hybrid hosts); the v2 hierarchy
 * (pure, or the hybrid's `unified`) for whole-tree kills.
 *
 * All of it is done by a small shell program (`sh/cgroup.sh`), not from JavaScript: Deno only
 * lets `/proc` and `/sys` be touched with `--allow-all`, and a script run with
 * explicit permissions (`--allow-run --allow-read --allow-write --allow-env`)
 * must work the same.
 *
 * @example
 * ```ts
 * import { detectCgroups } from "./cgroups.ts";
 * const layout = await detectCgroups(); // "hybrid /sys/fs/cgroup/unified …" or null
 * ```
 * @module
 */
import { readFileSync } from "node:fs";
import { InvalidInputError, PermissionDeniedError, TransportError } from "../../errors.ts";
import { getEnv, runtime } from "../../runtime/mod.ts";
import { collectText } from "../../streams.ts";
import { CGROUP_SH } from "./scripts.gen.ts";
import type { ProcId } from "./state.ts";

/** Where the cgroup hierarchies are. */
export interface CgroupLayout {
  kind: "v2" | "hybrid";
  /** The v2 hierarchy used for whole-tree kills. */
  v2: string;
  /** v1 controller mounts (hybrid only; `freezer` wherever the v1 freezer is mounted). */
  v1: { memory?: string | undefined; cpu?: string | undefined; pids?: string | undefined; freezer?: string | undefined };
  /** Whether v2 groups have `cgroup.freeze` (Linux ≥ 5.2). */
  v2Freeze: boolean;
}

/** Which freezer a sandbox's pause() uses: cgroup v2's `cgroup.freeze`, or a v1 `freezer` group. */
export type FreezerKind = "v1" | "v2";

/** A sandbox's cgroups, as its supervisor made them. */
export interface SandboxCgroups {
  /** The sandbox's v2 group; per-process groups are made under it. */
  v2: string;
  /** The memory controller's group (for OOM counts), if any. */
  memory?: string | undefined;
  /** Every group a process of the sandbox joins (v1 controllers). */
  join: string[];
}

/** Runs the helper and returns its stdout. */
export async function cgroupOp(op: string, ...args: string[]): Promise<string> {
  return await cgroupOpEnv({}, op, ...args);
}

/** {@linkcode cgroupOp} with extra environment (the `limits` verb reads its groups and values from it). */
export async function cgroupOpEnv(env: Record<string, string>, op: string, ...args: string[]): Promise<string> {
  const c = await runtime().spawn("/bin/sh", ["-c", CGROUP_SH, "mvm-cg", op, ...args], {
    clearEnv: true,
    env: { ...env, PATH: "/usr/sbin:/usr/bin:/sbin:/bin" },
    stderr: "null",
  });
  const out = await collectText(c.stdout!);
  await c.status;
  return out.trim();
}

let cached: Promise<CgroupLayout | null> | undefined;

/** Finds a usable, writable cgroup layout, or null (not root and no delegation). @example `await detectCgroups()` */
export function detectCgroups(): Promise<CgroupLayout | null> {
  return cached ??= cgroupOp("detect").then((line): CgroupLayout | null => {
    const [kind, v2, mem, cpu, pids, frz, v2fz] = line.split(" ");
    if (kind !== "v2" && kind !== "hybrid") return null;
    const v = (s: string | undefined) => (s && s !== "-" ? s : undefined);
    return {
      kind: kind as CgroupLayout["kind"],
      v2: v2 ?? "",
      v1: { memory: v(mem), cpu: v(cpu), pids: v(pids), freezer: v(frz) },
      v2Freeze: v2fz === "1",
    };
  }).catch((e) => {
    // a refused /bin/sh must not pass for a host without cgroups (limits would then be refused as needing root)
    if (e instanceof PermissionDeniedError) {
      cached = undefined;
      throw e;
    }
    return null;
  });
}

/**
 * The freezer new sandboxes use: cgroup v2's where groups have `cgroup.freeze`, else the v1 `freezer`
 * controller where it is mounted, else none (pause() is then UNSUPPORTED). `MVM_FREEZER=v1` or `v2`
 * (read at each create) asks for one; a freezer the host lacks is then none, never the other.
 *
 * @example `chooseFreezer(layout) // "v2" on a kernel ≥ 5.2`
 */
export function chooseFreezer(layout: CgroupLayout | null): FreezerKind | null {
  const want = getEnv("MVM_FREEZER") || "auto";
  if (want !== "auto" && want !== "v1" && want !== "v2") {
    throw new InvalidInputError(`MVM_FREEZER must be v1, v2 or auto (it is ${JSON.stringify(want)})`, {
      details: { field: "MVM_FREEZER" },
    });
  }
  if (!layout) return null;
  const v1 = layout.v1.freezer ? "v1" : null;
  const v2 = layout.v2Freeze ? "v2" : null;
  return want === "v1" ? v1 : want === "v2" ? v2 : v2 ?? v1;
}

/** A sandbox's v1 freezer group (it joins one when pause() uses the v1 freezer), or undefined. @example `v1FreezerGroup(cg, layout)` */
export function v1FreezerGroup(cgroups: SandboxCgroups | null, layout: CgroupLayout | null): string | undefined {
  const mount = layout?.v1.freezer;
  return mount ? cgroups?.join.find((g) => g.startsWith(`${mount}/mvm/`)) : undefined;
}

/** The environment the supervisor needs to make a sandbox's groups with its limits (and its v1 freezer group, with `freezer: "v1"`). */
export function supervisorCgroupEnv(
  layout: CgroupLayout,
  tag: string,
  id: string,
  limits: { cpu?: number | undefined; memoryMb?: number | undefined; pidsLimit?: number | undefined },
  pool: string[],
  freezer: FreezerKind | null = null,
): Record<string, string> {
  return {
    MVM_CG_FRZ: freezer === "v1" && layout.v1.freezer ? `${layout.v1.freezer}/mvm/${tag}/${id}` : "",
    MVM_CG_POOL: pool.join(" "),
    MVM_CG_KIND: layout.kind,
    MVM_CG_V2: `${layout.v2}/mvm/${tag}/${id}`,
    MVM_CG_MEM: layout.v1.memory ? `${layout.v1.memory}/mvm/${tag}/${id}` : "",
    MVM_CG_CPU: layout.v1.cpu ? `${layout.v1.cpu}/mvm/${tag}/${id}` : "",
    MVM_CG_PIDS: layout.v1.pids ? `${layout.v1.pids}/mvm/${tag}/${id}` : "",
    MVM_LIM_MEM: limits.memoryMb ? String(limits.memoryMb * 1024 * 1024) : "",
    MVM_LIM_CPU: limits.cpu ? String(Math.round(limits.cpu * 100000)) : "",
    MVM_LIM_PIDS: limits.pidsLimit ? String(limits.pidsLimit) : "",
  };
}

/**
 * Sets a running sandbox's limits (a sandbox from the warm pool, claimed for a create that asks for
 * limits). @example `await setLimits(layout, tag, id, { memoryMb: 256 })`
 */
export async function setLimits(
  layout: CgroupLayout,
  tag: string,
  id: string,
  limits: { cpu?: number | undefined; memoryMb?: number | undefined; pidsLimit?: number | undefined },
): Promise<void> {
  const out = await cgroupOpEnv(supervisorCgroupEnv(layout, tag, id, limits, []), "limits");
  if (out.startsWith("error ")) throw new TransportError(`cannot set the sandbox's limits: ${out.slice(6)}`, { details: { id } });
}

/**
 * Reads the groups the supervisor wrote to a sandbox's `cgroups` file, or null. Only groups of this
 * state root's own folder (`mvm/<tag>/<id>`) are taken, so a planted file cannot name another's.
 *
 * @example `readSandboxCgroups(dir.file("cgroups"), tag, id)`
 */
export function readSandboxCgroups(file: string, tag: string, id: string): SandboxCgroups | null {
  try {
    const [v2, mem, ...join] = readFileSync(file, "utf8").trim().split("\n");
    if (!v2) return null;
    const ours = (p: string) => p.endsWith(`/mvm/${tag}/${id}`) && !p.includes("/../");
    if (![v2, ...join].every(ours) || (mem && mem !== "-" && !ours(mem))) return null;
    return { v2, memory: mem && mem !== "-" ? mem : undefined, join: join.filter(Boolean) };
  } catch {
    return null;
  }
}

/**
 * Signals every process of a group: SIGKILL through `cgroup.kill` (forks included); other signals
 * with the group frozen meanwhile, so nothing forks past the listing. `except` is spared (the
 * host-side entry of a runner, whose death would hide how the guest ended).
 *
 * @example `await signalCgroup(dir, "SIGTERM", nsenterPid)`
 */
export async function signalCgroup(dir: string, signal: string, except?: number): Promise<void> {
  await cgroupOp("signal", dir, signal.replace(/^SIG/, ""), except ? String(except) : "");
}

/**
 * Without cgroups: signals the session led by the child of `parent` (the guest
 * runner under its host-side entry). Best effort: a process that starts its own session escapes.
 *
 * @example `await signalSession(nsenterPid, "SIGKILL")`
 */
export async function signalSession(parent: number, signal: string): Promise<void> {
  await cgroupOp("session", String(parent), signal.replace(/^SIG/, ""));
}

/**
 * Whether a process of a runner's tree is in a stop (SIGSTOP, a job-control stop, or traced): its group `cg`, or
 * without cgroups the session led by the child of `parent` (nsenter's). Guest code runs as the same uid as
 * the SDK's helpers in its sandbox and can stop them; the SDK's own processes never stop themselves.
 *
 * @example `if (await hasStoppedProcess(runner.cg, runner.child.pid)) console.log("stopped by the guest")`
 */
export async function hasStoppedProcess(cg: string | null, parent: number): Promise<boolean> {
  return /^\d+$/.test(await cgroupOp("stopped", cg ?? "-", String(parent)));
}

/** Kills what is left in per-process groups, removes them, and returns the sandbox's OOM-kill count. @example `await reapCgroups([dir], mem)` */
export async function reapCgroups(dirs: string[], memory: string | undefined): Promise<number> {
  const out = await cgroupOp("reap", memory ?? "-", ...dirs);
  return Number(/oom (\d+)/.exec(out)?.[1] ?? 0);
}

/** Makes per-process groups in one go; returns those that now exist. @example `await makeCgroups([a, b])` */
export async function makeCgroups(dirs: string[]): Promise<string[]> {
  return (await cgroupOp("make", ...dirs)).split("\n").filter(Boolean);
}

/**
 * Removes this state root's groups whose sandbox folder is gone. @example `await collectOrphanCgroups(layout, root, tag)`
 */
export async function collectOrphanCgroups(layout: CgroupLayout, stateRoot: string, tag: string): Promise<void> {
  const roots = [layout.v2, layout.v1.memory, layout.v1.cpu, layout.v1.pids, layout.v1.freezer].filter((r): r is string => !!r);
  await cgroupOp("gc", stateRoot, tag, ...roots);
}

/**
 * Signals a process only while it is still the one that started at `start` (a recycled pid is left
 * alone); with `wait`, waits up to 1 s for it to go. @example `await killProc({ pid, start }, "KILL", true)`
 */
export async function killProc(p: ProcId | undefined, signal: string, wait = false): Promise<void> {
  if (p) await cgroupOp("killpid", String(p.pid), p.start, signal.replace(/^SIG/, ""), wait ? "wait" : "");
}

/** Whether each process is still the same live process (not gone, not a zombie, not recycled). @example `await procsAlive([p])` */
export async function procsAlive(ps: ProcId[]): Promise<boolean[]> {
  const live = new Set((await cgroupOp("alive", ...ps.map((p) => `${p.pid}:${p.start}`))).split("\n"));
  return ps.map((p) => live.has(`${p.pid}:${p.start}`));
}

/** Kills everything in the groups and removes them. @example `await removeCgroups([v2, mem])` */
export async function removeCgroups(dirs: string[]): Promise<void> {
  if (dirs.length) await cgroupOp("remove", ...dirs);
}

/**
 * Freezes (`true`) or thaws (`false`) a group and everything under it — through cgroup v2's
 * `cgroup.freeze`, or `freezer.state` for a v1 freezer group — and waits until the kernel reports it
 * done. Returns `"ok"`, `"nofreeze"` (the group has no freezer) or `"failed"`. @example `await freezeCgroup(v2, true)`
 */
export async function freezeCgroup(dir: string, frozen: boolean): Promise<"ok" | "nofreeze" | "failed"> {
  const out = await cgroupOp(frozen ? "freeze" : "thaw", dir);
  return out === "ok" || out === "nofreeze" ? out : "failed";
}

/** Limits a sandbox really has: the tightest of its own groups', their ancestors' and the host's; missing when unknown. */
export interface EffectiveLimits {
  cpu?: number;
  memoryMb?: number;
  pidsLimit?: number;
}

/**
 * Reads the limits in force for processes in `dirs` (each group up to its hierarchy's root), bounded
 * by the host's cores, memory and `pid_max`. @example `await effectiveLimits([cg.v2, ...cg.join], 4)`
 */
export async function effectiveLimits(dirs: string[], hostCpus: number): Promise<EffectiveLimits> {
  let mem = Infinity, pids = Infinity, cpu = hostCpus > 0 ? hostCpus : Infinity;
  for (const line of (await cgroupOp("effective", ...dirs)).split("\n")) {
    const [k, a, b] = line.split(" ");
    const n = Number(a);
    if (!Number.isFinite(n) || n <= 0) continue;
    if (k === "mem" || k === "memtotal") mem = Math.min(mem, k === "mem" ? n : n * 1024);
    else if (k === "pids" || k === "pidmax") pids = Math.min(pids, n);
    else if (k === "cpu" && Number(b) > 0) cpu = Math.min(cpu, n / Number(b));
  }
  const out: EffectiveLimits = {};
  if (cpu !== Infinity) out.cpu = Math.round(cpu * 100) / 100;
  if (mem !== Infinity) out.memoryMb = Math.floor(mem / 1048576);
  if (pids !== Infinity) out.pidsLimit = pids;
  return out;
}
