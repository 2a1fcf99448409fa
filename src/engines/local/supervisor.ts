/**
 * The host side of a sandbox's life: starting its supervisor (`sh/supervisor.sh`, through the
 * host-side entry so no descriptor or session keyring of ours reaches it), tearing a sandbox down,
 * and reaping sandboxes whose supervisor died. Only folders this engine owns are touched, and a
 * process is only signalled while it is provably the same process (pid and start time).
 *
 * @example
 * ```ts
 * import { teardown } from "./supervisor.ts";
 * // await teardown(dir, tools);
 * console.log(typeof teardown);
 * ```
 * @module
 */
import { readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { CleanupError, TimeoutError, TransportError } from "../../errors.ts";
import { getEnv, hostPid, runtime } from "../../runtime/mod.ts";
import {
  collectOrphanCgroups,
  freezeCgroup,
  type FreezerKind,
  killProc,
  procsAlive,
  readSandboxCgroups,
  removeCgroups,
  signalCgroup,
  supervisorCgroupEnv,
  v1FreezerGroup,
} from "./cgroups.ts";
import type { Tools } from "./preflight.ts";
import { GUEST_PATH } from "./runners.ts";
import { ENTER_PL, SUPERVISOR_SH, WATCH_PL } from "./scripts.gen.ts";
import { auditLog, SandboxDir } from "./state.ts";

/** Sandbox ids: `sbx-` and 12 of [a-z0-9]. */
export const ID_RE: RegExp = /^sbx-[a-z0-9]{12}$/;
const READY_TIMEOUT_MS = 15_000;

/** What a supervisor is started with. */
export interface SupervisorInput {
  dir: SandboxDir;
  ttlSeconds: number;
  limits: { cpu?: number | undefined; memoryMb?: number | undefined; pidsLimit?: number | undefined };
  /** Per-process groups for the supervisor to make at once. */
  pool: string[];
  /** The freezer pause() will use (`chooseFreezer`): with `v1`, the supervisor makes and joins a v1 freezer group. */
  freezer: FreezerKind | null;
  bwrapArgv: string[];
}

/**
 * Starts a sandbox's supervisor, makes the sandbox's folder (`prepare`) while it starts, and waits
 * until the sandbox is up. The supervisor waits for "go" before it uses the folder: if this process
 * dies (or `prepare` throws) first, the supervisor sees the end of its input and removes the folder,
 * so an owner killed at any point of a create leaves nothing behind.
 *
 * @example `await startSupervisor(t, input, () => makeFolder(dir))`
 */
export async function startSupervisor(t: Tools, i: SupervisorInput, prepare: () => void | Promise<void>): Promise<void> {
  const sup = await runtime().spawn(t.perl, [
    "-e",
    ENTER_PL,
    String(t.keyctl),
    // with MVM_DETACH, forked off the process spawned here: this runtime never holds the supervisor,
    // so it never kills it (Deno kills the children it holds when a test module's runtime ends)
    t.setsid,
    "/bin/sh",
    "-c",
    SUPERVISOR_SH,
    "mvm-supervisor",
    i.dir.path,
    String(hostPid()),
    ownStart(),
    String(i.ttlSeconds),
    ...i.bwrapArgv,
  ], {
    clearEnv: true,
    env: {
      PATH: GUEST_PATH,
      MVM_DETACH: "1",
      MVM_PERL: t.perl,
      MVM_WATCH_PL: WATCH_PL,
      // its transitions (started, jail.restarted, destroyed) reach the signed chain through this folder
      MVM_SPOOL: auditLog(t.root).spool(),
      ...(t.layout ? supervisorCgroupEnv(t.layout, t.tag, i.dir.id, i.limits, i.pool, i.freezer) : {}),
    },
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  });
  const w = sup.stdin!.getWriter();
  try {
    await prepare();
  } catch (e) {
    await w.close().catch(() => {});
    sup.unref();
    throw e;
  }
  await w.write(new TextEncoder().encode("go\n"));
  await w.close();
  const out = supervisorLines(sup.stdout!);
  // it says its pid and start time first: a sandbox that does not come up in time is ended through it
  const self = await within(out.seen(/^pid (\d+) (\d+)$/m), null);
  const said = self && await within(out.seen(/^(ready|error) .*$/m), { pid: Number(self[1]), start: self[2]! });
  sup.unref();
  const line = said?.[0] ?? out.text().replace(/^pid .*\n?/m, "").trim();
  if (!line.startsWith("ready ")) throw startFailure(t, i.dir.id, line.replace(/^error /, "").trim());
}

/** The supervisor's stdout as it comes: `seen(re)` resolves to the first match, or null at its end. */
function supervisorLines(s: ReadableStream<Uint8Array>): { seen(re: RegExp): Promise<RegExpExecArray | null>; text(): string } {
  let text = "";
  let ended = false;
  const wake: Array<() => void> = [];
  const woken = () => wake.splice(0).forEach((f) => f());
  (async () => {
    const dec = new TextDecoder();
    try {
      for await (const chunk of s) {
        text += dec.decode(chunk, { stream: true });
        woken();
      }
    } catch { /* its end */ }
    ended = true;
    woken();
  })();
  return {
    async seen(re) {
      for (;;) {
        const m = re.exec(text);
        if (m || ended) return m;
        await new Promise<void>((r) => wake.push(r));
      }
    },
    text: () => text,
  };
}

/**
 * Waits for the supervisor's word; past READY_TIMEOUT_MS the start is given up, and the supervisor
 * (by pid and start time, when it said them) told to end what it started.
 */
async function within<T>(p: Promise<T>, sup: { pid: number; start: string } | null): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, rej) =>
    timer = setTimeout(() => {
      if (sup) killProc(sup, "TERM").catch(() => {});
      rej(new TimeoutError(`the sandbox did not start within ${READY_TIMEOUT_MS / 1000} s`));
    }, READY_TIMEOUT_MS)
  );
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * This process's start time (field 22 of its /proc/PID/stat), which the supervisor checks its owner by;
 * "-" when the runtime refuses the read (Deno without --allow-all), and the supervisor reads it itself
 * once it has its "go" (this process is alive then: it is the one that writes "go").
 */
function ownStart(): string {
  try {
    const stat = readFileSync(`/proc/${hostPid()}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] || "-";
  } catch {
    return "-";
  }
}

/** What failed when the sandbox did not start, and what to do about it. */
function startFailure(t: Tools, id: string, said: string): TransportError {
  const fromEnv = getEnv("MVM_BWRAP") !== undefined && getEnv("MVM_BWRAP") !== "";
  const what = `bubblewrap (${t.bwrap}${fromEnv ? ", named by MVM_BWRAP" : ""})`;
  const why = said ? `${what} failed: ${said}` : `${what} exited before the sandbox was up, without saying why`;
  const todo = fromEnv
    ? `check that MVM_BWRAP names a working bubblewrap (${t.bwrap} --version should print "bubblewrap 0.x"), or unset it to use the host's bwrap (found in /usr/bin, /bin …)`
    : `check that bubblewrap works on this host: "bwrap --unshare-all --ro-bind / / true" should exit 0 (unprivileged user namespaces may be ` +
      `disabled: sysctl kernel.unprivileged_userns_clone, kernel.apparmor_restrict_unprivileged_userns)`;
  return new TransportError(`could not start sandbox ${id}: ${why}; ${todo}`, { details: { id, bwrap: t.bwrap, fromEnv } });
}

/** Kills every process of a sandbox (its pid namespace dies with its pid 1), then its groups. @example `await killSandbox(dir, t)` */
export async function killSandbox(dir: SandboxDir, t: Tools): Promise<void> {
  const cgroups = readSandboxCgroups(dir.file("cgroups"), t.tag, dir.id);
  // a paused sandbox is thawed first: frozen processes (the host-side nsenters too) cannot reap or die
  if (cgroups && dir.has("paused")) {
    const v1 = v1FreezerGroup(cgroups, t.layout);
    await freezeCgroup(v1 ?? cgroups.v2, false).catch(() => {});
  }
  // pid 1 first: the host-side nsenters are still there to reap their children, so the pid
  // namespace can finish dying; then whatever is left in the sandbox's groups
  await killProc(dir.readPids().reaper, "KILL", true).catch(() => {});
  if (cgroups) await signalCgroup(cgroups.v2, "SIGKILL").catch(() => {});
}

/** Tears a sandbox down through its supervisor, or by hand when the supervisor is gone. @example `await teardown(dir, t)` */
export async function teardown(dir: SandboxDir, t: Tools): Promise<void> {
  if (!dir.trusted(t.uid)) return;
  const sup = dir.readPids().supervisor;
  if (sup && (await procsAlive([sup]).catch(() => [false]))[0]) {
    await killProc(sup, "TERM").catch(() => {});
    const deadline = Date.now() + 10_000;
    while (dir.exists() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    if (!dir.exists()) return;
  }
  // no supervisor (it was killed, or creation failed half-way): clean up from here, and say so in the
  // chain (no supervisor is left to record the sandbox's end)
  await killSandbox(dir, t);
  try {
    dir.audit("destroyed", { reason: "supervisor-gone" });
  } catch { /* the chain is not writable: the cleanup still happens */ }
  const cgroups = readSandboxCgroups(dir.file("cgroups"), t.tag, dir.id);
  if (cgroups) await removeCgroups([cgroups.v2, ...cgroups.join]).catch(() => {});
  try {
    rmSync(dir.path, { recursive: true, force: true });
  } catch (e) {
    throw new CleanupError(
      `sandbox ${dir.id}: its processes are gone but its folder ${dir.path} could not be removed: ${(e as Error).message}`,
      {
        cause: e,
        details: { id: dir.id, path: dir.path },
      },
    );
  }
}

/** Whether a sandbox's supervisor still runs (a folder being created counts, for a minute). */
export function supervised(dir: SandboxDir): boolean {
  if (dir.readPids().supervisor) return dir.supervised();
  try {
    return Date.now() - statSync(dir.path).mtimeMs < 60_000;
  } catch {
    return false;
  }
}

let lastCgroupGc = 0;
let lastReap = 0;
const REAP_EVERY_MS = 30_000;

/**
 * Removes this state root's sandboxes whose supervisor died without cleaning up (e.g. SIGKILLed),
 * and, in the background and at most every 30 s, this state root's cgroups whose folder is gone.
 * A create calls it with `throttled`: the first in a process waits for the sweep, later ones start
 * it in the background at most every 30 s, so a create never costs a scan of every sandbox.
 *
 * @example `await reapStale(t)`
 */
export async function reapStale(t: Tools, throttled = false): Promise<void> {
  if (t.layout && Date.now() - lastCgroupGc > REAP_EVERY_MS) {
    lastCgroupGc = Date.now();
    collectOrphanCgroups(t.layout, t.root, t.tag).catch(() => {});
  }
  if (throttled && lastReap !== 0) {
    if (Date.now() - lastReap < REAP_EVERY_MS) return;
    lastReap = Date.now();
    reapNow(t).catch(() => {});
    return;
  }
  lastReap = Date.now();
  await reapNow(t);
}

async function reapNow(t: Tools): Promise<void> {
  let entries: string[] = [];
  try {
    entries = readdirSync(t.root);
  } catch {
    return;
  }
  for (const id of entries) {
    if (!ID_RE.test(id)) continue;
    const dir = new SandboxDir(t.root, id);
    if (!dir.trusted(t.uid) || supervised(dir)) continue;
    await teardown(dir, t).catch(() => {});
  }
}
