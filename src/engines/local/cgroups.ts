/**
 * Cgroups for the local engine: limits (memory, cpu, pids) and per-process
 * groups that can be killed as a whole. Cgroup v2 where the controllers are
 * there; v1 controllers where they are not (hybrid hosts); the v2 hierarchy
 * (pure, or the hybrid's `unified`) for whole-tree kills.
 *
 * All of it is done by small shell programs, not from JavaScript: Deno only
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
import { runtime } from "../../runtime/mod.ts";
import { collectText } from "../../streams.ts";

/**
 * Shell functions for cgroups, shared by the helper below and the supervisor:
 * `killall DIR SIG [SPARE]`, `sweep DIR` (kill, remove per-process groups, remove DIR), `empty`, `oom`.
 */
export const CGROUP_FNS: string = String.raw`
procs() { while read -r p; do printf '%s ' "$p"; done < "$1/cgroup.procs" 2>/dev/null; }
frozen() { while read -r k v; do [ "$k" = frozen ] && [ "$v" = 1 ] && return 0; done < "$1/cgroup.events" 2>/dev/null; return 1; }
killall() {
  if [ "$2" = KILL ] && [ -e "$1/cgroup.kill" ]; then echo 1 > "$1/cgroup.kill" 2>/dev/null && return 0; fi
  # other signals: freeze the group so nothing forks past the listing, signal each, thaw
  fz=0
  if [ -e "$1/cgroup.freeze" ] && echo 1 > "$1/cgroup.freeze" 2>/dev/null; then
    fz=1; i=0; while ! frozen "$1" && [ $i -lt 100 ]; do i=$((i+1)); sleep 0.002; done
  fi
  # the spared process is signalled too when it is alone: the job has not forked yet, and its death
  # is then the job's
  list=$(procs "$1"); spare=%{3:-}; [ "$list" = "$spare " ] && spare=""
  for p in $list; do [ "$p" = "$spare" ] || kill -s "$2" "$p" 2>/dev/null; done
  [ $fz = 1 ] && echo 0 > "$1/cgroup.freeze" 2>/dev/null
  return 0
}
empty() { read -r x < "$1/cgroup.procs" 2>/dev/null && return 1; return 0; }
oom() {
  [ -n "$1" ] && [ "$1" != - ] || { echo 0; return; }
  f="$1/memory.oom_control"; [ -e "$f" ] || f="$1/memory.events"
  while read -r k v; do [ "$k" = oom_kill ] && { echo "$v"; return; }; done < "$f" 2>/dev/null
  echo 0
}
sweep() {
  i=0
  while [ -d "$1" ] && [ $i -lt 100 ]; do
    for sub in "$1"/*/; do [ -d "$sub" ] && { killall "$sub" KILL; rmdir "$sub" 2>/dev/null; }; done
    killall "$1" KILL
    rmdir "$1" 2>/dev/null || { i=$((i+1)); sleep 0.02; }
  done
}
`.replaceAll("%{", "${");

/** Host-side cgroup helper. Usage: `sh -c CGROUP_SH mvm-cg OP ARGS…`. */
export const CGROUP_SH: string = CGROUP_FNS + String.raw`
op=$1; shift
case "$op" in
  detect)
    v2=; mem=; cpu=; pids=
    while read -r dev mnt typ opts rest; do
      case "$typ" in
        cgroup2) [ -z "$v2" ] && v2=$mnt;;
        cgroup)
          case ",$opts," in *,memory,*) mem=$mnt;; esac
          case ",$opts," in *,cpu,*) cpu=$mnt;; esac
          case ",$opts," in *,pids,*) pids=$mnt;; esac;;
      esac
    done < /proc/self/mounts
    [ -n "$v2" ] || { echo none; exit 0; }
    kind=hybrid
    read -r ctl < "$v2/cgroup.controllers" 2>/dev/null
    case " $ctl " in *" memory "*) kind=v2;; esac
    mkdir -p "$v2/mvm" 2>/dev/null && [ -w "$v2/mvm/cgroup.procs" ] || { echo none; exit 0; }
    if [ "$kind" = v2 ]; then
      echo "+memory +pids +cpu" > "$v2/cgroup.subtree_control" 2>/dev/null
      echo "+memory +pids +cpu" > "$v2/mvm/cgroup.subtree_control" 2>/dev/null
      mem=; cpu=; pids=
    fi
    echo "$kind $v2 %{mem:--} %{cpu:--} %{pids:--}";;
  signal) killall "$1" "$2" "%{3:-}";;
  session)
    # no cgroups: signal the session of the process whose parent is $1 (nsenter's child, a session leader)
    parent=$1; sig=$2
    for s in /proc/[0-9]*/stat; do
      read -r line < "$s" 2>/dev/null || continue
      set -- %{line##*) }
      [ "$2" = "$parent" ] || continue
      p=%{s#/proc/}; p=%{p%/stat}
      kill -s "$sig" -- "-$p" 2>/dev/null || kill -s "$sig" "$p" 2>/dev/null
    done;;
  make) mkdir "$@" 2>/dev/null; for c in "$@"; do [ -d "$c" ] && echo "$c"; done;;
  reap)
    mem=$1; shift
    for c in "$@"; do killall "$c" KILL; done
    for c in "$@"; do
      i=0; while ! empty "$c" && [ $i -lt 200 ]; do i=$((i+1)); sleep 0.005; done
    done
    rmdir "$@" 2>/dev/null
    echo "oom $(oom "$mem")";;
  remove)
    for c in "$@"; do sweep "$c"; done;;
  gc)
    # groups of sandboxes whose state folder is gone (left by a teardown that raced a client)
    state=$1; shift
    for r in "$@"; do
      for c in "$r"/mvm/sbx-*; do
        [ -d "$c" ] && [ ! -d "$state/%{c##*/}" ] && sweep "$c"
      done
    done;;
esac
`.replaceAll("%{", "${");

/** Where the cgroup hierarchies are. */
export interface CgroupLayout {
  kind: "v2" | "hybrid";
  /** The v2 hierarchy used for whole-tree kills. */
  v2: string;
  /** v1 controller mounts (hybrid only). */
  v1: { memory?: string; cpu?: string; pids?: string };
}

/** A sandbox's cgroups, as its supervisor made them. */
export interface SandboxCgroups {
  /** The sandbox's v2 group; per-process groups are made under it. */
  v2: string;
  /** The memory controller's group (for OOM counts), if any. */
  memory?: string;
  /** Every group a process of the sandbox joins (v1 controllers). */
  join: string[];
}

/** Runs the helper and returns its stdout. */
export async function cgroupOp(op: string, ...args: string[]): Promise<string> {
  const c = await runtime().spawn("/bin/sh", ["-c", CGROUP_SH, "mvm-cg", op, ...args], {
    clearEnv: true,
    env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" },
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
    const [kind, v2, mem, cpu, pids] = line.split(" ");
    if (kind !== "v2" && kind !== "hybrid") return null;
    const v = (s: string | undefined) => (s && s !== "-" ? s : undefined);
    return { kind: kind as CgroupLayout["kind"], v2, v1: { memory: v(mem), cpu: v(cpu), pids: v(pids) } };
  }).catch(() => null);
}

/** The environment the supervisor needs to make a sandbox's groups with its limits. */
export function supervisorCgroupEnv(
  layout: CgroupLayout,
  id: string,
  limits: { cpu?: number; memoryMb?: number; pidsLimit?: number },
  pool: string[],
): Record<string, string> {
  return {
    MVM_CG_POOL: pool.join(" "),
    MVM_CG_KIND: layout.kind,
    MVM_CG_V2: `${layout.v2}/mvm/${id}`,
    MVM_CG_MEM: layout.v1.memory ? `${layout.v1.memory}/mvm/${id}` : "",
    MVM_CG_CPU: layout.v1.cpu ? `${layout.v1.cpu}/mvm/${id}` : "",
    MVM_CG_PIDS: layout.v1.pids ? `${layout.v1.pids}/mvm/${id}` : "",
    MVM_LIM_MEM: limits.memoryMb ? String(limits.memoryMb * 1024 * 1024) : "",
    MVM_LIM_CPU: limits.cpu ? String(Math.round(limits.cpu * 100000)) : "",
    MVM_LIM_PIDS: limits.pidsLimit ? String(limits.pidsLimit) : "",
  };
}

/** Reads the groups the supervisor wrote to `<dir>/cgroups`, or null. @example `readSandboxCgroups(dir)` */
export function readSandboxCgroups(dir: string): SandboxCgroups | null {
  try {
    const [v2, mem, ...join] = readFileSync(`${dir}/cgroups`, "utf8").trim().split("\n");
    if (!v2) return null;
    return { v2, memory: mem && mem !== "-" ? mem : undefined, join: join.filter(Boolean) };
  } catch {
    return null;
  }
}

/**
 * Signals every process of a group: SIGKILL through `cgroup.kill` (forks included); other signals
 * with the group frozen meanwhile, so nothing forks past the listing. `except` is spared (the
 * host-side nsenter, whose death would hide how the guest ended).
 *
 * @example `await signalCgroup(dir, "SIGTERM", nsenterPid)`
 */
export async function signalCgroup(dir: string, signal: string, except?: number): Promise<void> {
  await cgroupOp("signal", dir, signal.replace(/^SIG/, ""), except ? String(except) : "");
}

/**
 * Without cgroups: signals the session led by the child of `parent` (the guest
 * command under nsenter). Best effort: a process that starts its own session escapes.
 *
 * @example `await signalSession(nsenterPid, "SIGKILL")`
 */
export async function signalSession(parent: number, signal: string): Promise<void> {
  await cgroupOp("session", String(parent), signal.replace(/^SIG/, ""));
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
 * Removes the groups of sandboxes whose state folder is gone. @example `await collectOrphanCgroups(layout, stateRoot)`
 */
export async function collectOrphanCgroups(layout: CgroupLayout, stateRoot: string): Promise<void> {
  const roots = [layout.v2, layout.v1.memory, layout.v1.cpu, layout.v1.pids].filter((r): r is string => !!r);
  await cgroupOp("gc", stateRoot, ...roots);
}

/** Kills everything in the groups and removes them. @example `await removeCgroups([v2, mem])` */
export async function removeCgroups(dirs: string[]): Promise<void> {
  if (dirs.length) await cgroupOp("remove", ...dirs);
}
