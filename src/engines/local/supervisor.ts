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
import { readdirSync, rmSync, statSync } from "node:fs";
import { CleanupError, TimeoutError, TransportError } from "../../errors.ts";
import { type ChildProcess, getEnv, hostPid, runtime } from "../../runtime/mod.ts";
import { collectText } from "../../streams.ts";
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
    t.setsid,
    "/bin/sh",
    "-c",
    SUPERVISOR_SH,
    "mvm-supervisor",
    i.dir.path,
    String(hostPid()),
    String(i.ttlSeconds),
    ...i.bwrapArgv,
  ], {
    clearEnv: true,
    env: {
      PATH: GUEST_PATH,
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
  const line = await readReadyLine(sup);
  sup.unref();
  if (!line.startsWith("ready ")) throw startFailure(t, i.dir.id, line.replace(/^error /, "").trim());
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

async function readReadyLine(child: ChildProcess): Promise<string> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, rej) =>
    timer = setTimeout(() => {
      child.kill("SIGTERM");
      rej(new TimeoutError(`the sandbox did not start within ${READY_TIMEOUT_MS / 1000} s`));
    }, READY_TIMEOUT_MS)
  );
  try {
    const text = await Promise.race([collectText(child.stdout!), timeout]);
    return text.split("\n").find((l) => l.startsWith("ready ") || l.startsWith("error ")) ?? text.trim();
  } finally {
    clearTimeout(timer);
  }
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
