/**
 * Cgroups for the local engine: limits (memory, cpu, pids) and a per-process
 * group that can be killed as a whole. Cgroup v2 where the controllers are
 * there; v1 controllers where they are not (hybrid hosts); the v2 hierarchy
 * (pure or the hybrid's `unified`) for whole-tree kills.
 *
 * @example
 * ```ts
 * import { detectCgroups } from "./cgroups.ts";
 * const layout = detectCgroups(); // { kind: "hybrid", … } | { kind: "v2", … } | null
 * ```
 * @module
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from "node:fs";

/** Where the cgroup hierarchies are. */
export interface CgroupLayout {
  kind: "v2" | "hybrid";
  /** The v2 hierarchy used for whole-tree kills. */
  v2: string;
  /** v1 controller mounts (hybrid only). */
  v1: { memory?: string; cpu?: string; pids?: string };
}

let cached: CgroupLayout | null | undefined;

/** Finds a usable, writable cgroup layout, or null (no root, no delegation). @example `detectCgroups()?.kind` */
export function detectCgroups(): CgroupLayout | null {
  if (cached !== undefined) return cached;
  cached = null;
  try {
    const mounts = readFileSync("/proc/self/mounts", "utf8").split("\n").map((l) => l.split(" "));
    const v2 = mounts.find((m) => m[2] === "cgroup2")?.[1];
    const v1 = (ctrl: string) => mounts.find((m) => m[2] === "cgroup" && m[3]?.split(",").includes(ctrl))?.[1];
    if (!v2) return null;
    const ctrls = existsSync(`${v2}/cgroup.controllers`) ? readFileSync(`${v2}/cgroup.controllers`, "utf8") : "";
    const layout: CgroupLayout = ctrls.includes("memory")
      ? { kind: "v2", v2, v1: {} }
      : { kind: "hybrid", v2, v1: { memory: v1("memory"), cpu: v1("cpu"), pids: v1("pids") } };
    mkdirSync(`${v2}/mvm`, { recursive: true });
    if (layout.kind === "v2") {
      try {
        writeFileSync(`${v2}/cgroup.subtree_control`, "+memory +pids +cpu");
        writeFileSync(`${v2}/mvm/cgroup.subtree_control`, "+memory +pids +cpu");
      } catch { /* controllers may be enabled already or unavailable */ }
    }
    cached = layout;
  } catch {
    cached = null;
  }
  return cached;
}

/** A sandbox's cgroups. */
export interface SandboxCgroups {
  /** Directories a process of the sandbox joins (their `cgroup.procs`). */
  join: string[];
  /** The v2 directory under which per-process groups are made. */
  v2: string;
  /** The memory controller's directory, for OOM counts. */
  memory?: string;
  kind: "v2" | "hybrid";
}

/** Creates the cgroups of sandbox `id` with its limits. @example `createSandboxCgroups(layout, id, { memoryMb: 256 })` */
export function createSandboxCgroups(
  layout: CgroupLayout,
  id: string,
  limits: { cpu?: number; memoryMb?: number; pidsLimit?: number },
): SandboxCgroups {
  const v2 = `${layout.v2}/mvm/${id}`;
  mkdirSync(v2, { recursive: true });
  const join = [v2];
  let memory: string | undefined;
  if (layout.kind === "v2") {
    if (limits.memoryMb) {
      writeFileSync(`${v2}/memory.max`, String(limits.memoryMb * 1024 * 1024));
      if (existsSync(`${v2}/memory.swap.max`)) writeFileSync(`${v2}/memory.swap.max`, "0");
    }
    if (limits.cpu) writeFileSync(`${v2}/cpu.max`, `${Math.round(limits.cpu * 100000)} 100000`);
    if (limits.pidsLimit) writeFileSync(`${v2}/pids.max`, String(limits.pidsLimit));
    memory = v2;
  } else {
    const make = (root: string | undefined) => {
      if (!root) return undefined;
      const dir = `${root}/mvm/${id}`;
      mkdirSync(dir, { recursive: true });
      join.push(dir);
      return dir;
    };
    const mem = make(layout.v1.memory);
    if (mem && limits.memoryMb) {
      const bytes = String(limits.memoryMb * 1024 * 1024);
      writeFileSync(`${mem}/memory.limit_in_bytes`, bytes);
      if (existsSync(`${mem}/memory.memsw.limit_in_bytes`)) writeFileSync(`${mem}/memory.memsw.limit_in_bytes`, bytes);
    }
    memory = mem;
    const cpu = make(layout.v1.cpu);
    if (cpu && limits.cpu) {
      writeFileSync(`${cpu}/cpu.cfs_period_us`, "100000");
      writeFileSync(`${cpu}/cpu.cfs_quota_us`, String(Math.round(limits.cpu * 100000)));
    }
    const pids = make(layout.v1.pids);
    if (pids && limits.pidsLimit) writeFileSync(`${pids}/pids.max`, String(limits.pidsLimit));
  }
  return { join, v2, memory, kind: layout.kind };
}

/** How many OOM kills the sandbox's memory cgroup has seen. @example `oomKills(cg)` */
export function oomKills(cg: SandboxCgroups): number {
  if (!cg.memory) return 0;
  try {
    const file = cg.kind === "v2" ? `${cg.memory}/memory.events` : `${cg.memory}/memory.oom_control`;
    const m = /oom_kill (\d+)/.exec(readFileSync(file, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Makes a per-process v2 group under the sandbox's; returns its path. @example `processCgroup(cg, "p1")` */
export function processCgroup(cg: SandboxCgroups, name: string): string {
  const dir = `${cg.v2}/${name}`;
  mkdirSync(dir);
  return dir;
}

/** Signals every process in a v2 group (SIGKILL uses `cgroup.kill`, which also catches forks). @example `signalCgroup(dir, "SIGKILL")` */
export function signalCgroup(dir: string, signal: string, kill: (pid: number, sig: string) => void): void {
  if (signal === "SIGKILL" && existsSync(`${dir}/cgroup.kill`)) {
    try {
      writeFileSync(`${dir}/cgroup.kill`, "1");
      return;
    } catch { /* fall through */ }
  }
  for (const line of safeRead(`${dir}/cgroup.procs`).split("\n")) {
    const pid = Number(line);
    if (pid > 0) {
      try {
        kill(pid, signal);
      } catch { /* gone */ }
    }
  }
}

/** Whether any process is left in the group. @example `cgroupEmpty(dir)` */
export function cgroupEmpty(dir: string): boolean {
  return safeRead(`${dir}/cgroup.procs`).trim() === "";
}

/** Removes a (now empty) group; true when it is gone. @example `removeCgroup(dir)` */
export function removeCgroup(dir: string): boolean {
  try {
    for (const e of readdirSync(dir)) {
      const sub = `${dir}/${e}`;
      if (statSync(sub).isDirectory()) removeCgroup(sub);
    }
    rmdirSync(dir);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "ENOENT";
  }
}

function safeRead(p: string): string {
  try {
    return readFileSync(p, "utf8");
  } catch {
    return "";
  }
}
