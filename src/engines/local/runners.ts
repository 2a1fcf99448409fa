/**
 * Runners: processes already inside a sandbox, waiting for one job. Each is spawned through the
 * host-side entry (`sh/enter.pl`: fresh session keyring, no inherited descriptors, its own
 * per-process cgroup), `nsenter` into the sandbox's namespaces and root through its init, `setpriv`
 * (no capabilities, `no_new_privs`), and the SDK's execute-only shell (`sh/runner.sh`), which
 * proves it is in the right sandbox and says so with one byte. A client keeps one spawned ahead of
 * need, so a command usually costs one frame written and one `exec`.
 *
 * @example
 * ```ts
 * import { RunnerPool } from "./runners.ts";
 * // const pool = new RunnerPool(ctx); const r = await pool.take("run a command");
 * console.log(typeof RunnerPool);
 * ```
 * @module
 */
import { TransportError } from "../../errors.ts";
import { type ChildProcess, runtime } from "../../runtime/mod.ts";
import { collectText } from "../../streams.ts";
import { PeekReader } from "./core.ts";
import type { Tools } from "./preflight.ts";
import { ENTER_PL, RUNNER_SH } from "./scripts.gen.ts";

/** The PATH of host-side helpers and of guest processes unless they set their own. */
export const GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/**
 * Runners kept ready per sandbox and client: two, so a burst (a file write is two operations; an agent's
 * tool calls come in pairs) does not wait for a spawn, which costs ~4 execs with the host-side entry.
 */
const SPARES = 2;
/** Spares of a sandbox that has not run anything yet (an idle sandbox holds one runner, not two). */
const IDLE_SPARES = 1;

/** How long a runner may take to say it is in place. */
const HANDSHAKE_TIMEOUT_MS = 10_000;

/** A runner: spawned, inside, waiting for its job. `out` is its stdout past the handshake. */
export interface Runner {
  child: ChildProcess;
  cg: string | null;
  out: PeekReader;
  dead: boolean;
}

/** What a pool needs from its sandbox. */
export interface RunnerContext {
  id: string;
  tools: Tools;
  /** The pid the SDK enters through (the init), checked alive; throws when the sandbox is gone. */
  initPid(what: string): number;
  /** The cgroups a runner joins (a fresh per-process group first), or null without cgroups. */
  takeCgroups(): Promise<{ cg: string; join: string[] } | null>;
  /** Gives back a per-process group that will not be used. */
  reap(cg: string | null): void;
  /** Signals a runner's whole tree. */
  killTree(r: Runner, signal: string): Promise<void>;
}

/** The entry's argv: enter.pl, then nsenter → setpriv → [setsid] → the runner. */
export function runnerArgv(t: Tools, id: string, initPid: number, session: boolean): string[] {
  return [
    "-e",
    ENTER_PL,
    String(t.keyctl),
    t.nsenter,
    "-t",
    String(initPid),
    "-U",
    "-m",
    "-p",
    "-n",
    "-i",
    "-u",
    "-r",
    "-w",
    // root becomes uid 0 of the sandbox's user namespace (its own host uid); anyone else keeps their
    // credentials, which that namespace maps to 0
    ...(t.uid === 0 ? [] : ["--preserve-credentials"]),
    "-C",
    "--",
    "/usr/bin/setpriv",
    "--no-new-privs",
    "--bounding-set=-all",
    "--inh-caps=-all",
    "--",
    // without cgroups the runner leads its own session, so a kill can reach the job's tree
    ...(session ? ["/.mvm/setsid"] : []),
    "/.mvm/sh",
    "-c",
    RUNNER_SH,
    "mvm-runner",
    id,
  ];
}

/** One sandbox's runners for one client. */
export class RunnerPool {
  #spares: Runner[] = [];
  #spawning: Promise<void> | null = null;
  #warming: ChildProcess | null = null;
  /** How many spares to keep: one until the sandbox is used, then SPARES. */
  #target = IDLE_SPARES;
  /** Someone waits for the warm spawn in progress. */
  #awaited = false;
  #closed = false;
  constructor(readonly ctx: RunnerContext) {}

  /** A runner for a job: a spare, the one on its way, or a new one (`fresh`); and the next is warmed. */
  async take(what: string, fresh = false): Promise<Runner> {
    this.#target = SPARES;
    if (fresh) return await this.spawn(what, true);
    const pop = () => {
      let r = this.#spares.pop();
      while (r?.dead) {
        this.#drop(r);
        r = this.#spares.pop();
      }
      return r;
    };
    // a runner already on its way is sooner than a new one, and two spawns at once only slow each other;
    // waiting for it, this process must stay alive (a warm spawn does not hold it)
    this.#awaited = true;
    this.#warming?.ref();
    let r = pop() ?? (this.#spawning ? (await this.#spawning, pop()) : undefined);
    r ??= await this.spawn(what, true);
    this.warm();
    return r;
  }

  /** Keeps spares spawned ahead of need (in the background; they never keep this process alive). */
  warm(): void {
    if (this.#closed || this.#spares.length >= this.#target || this.#spawning) return;
    let ok = false;
    this.#spawning = this.spawn("warm a runner", false)
      .then((r) => {
        ok = true;
        if (this.#closed) this.#drop(r);
        else this.#spares.push(r);
      })
      .catch(() => {})
      .finally(() => {
        this.#spawning = null;
        this.#awaited = false;
        // one at a time (two spawns at once only slow each other), until the pool is full; a failed
        // spawn (the sandbox died) is not retried here
        if (ok && this.#spares.length < this.#target) this.warm();
      });
  }

  /** Settles when the spawn in progress (if any) is done. */
  settled(): Promise<void> {
    return this.#spawning ?? Promise.resolve();
  }

  /** Ends the spare runners and closes their pipes (they hold descriptors until then). */
  close(): void {
    this.#closed = true;
    for (const r of this.#spares.splice(0)) this.#drop(r);
  }

  /**
   * Lets a spare go: at the end of its stdin a runner exits by itself. (Killing the host-side nsenter
   * instead would orphan the runner inside, and a dying pid namespace then waits for it.)
   */
  #drop(r: Runner): void {
    r.child.stdin?.close().catch(() => {});
    r.out.cancel().catch(() => {});
    r.child.stderr?.cancel().catch(() => {});
    this.ctx.reap(r.cg);
  }

  /** Spawns a runner and waits for its handshake; only a `foreground` spawn keeps this process alive meanwhile. */
  async spawn(what: string, foreground: boolean): Promise<Runner> {
    const initPid = this.ctx.initPid(what);
    const groups = await this.ctx.takeCgroups();
    const dirs = groups ? [groups.cg, ...groups.join] : [];
    const env: Record<string, string> = { PATH: GUEST_PATH };
    dirs.forEach((d, i) => env[`MVM_CG${i + 1}`] = d);
    let child: ChildProcess;
    try {
      child = await runtime().spawn(this.ctx.tools.perl, runnerArgv(this.ctx.tools, this.ctx.id, initPid, groups === null), {
        clearEnv: true,
        env,
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      });
    } catch (e) {
      this.ctx.reap(groups?.cg ?? null);
      throw e;
    }
    if (!foreground) {
      this.#warming = child;
      if (!this.#awaited) child.unref();
    }
    const r: Runner = { child, cg: groups?.cg ?? null, out: new PeekReader(child.stdout!), dead: false };
    child.status.then(() => r.dead = true, () => r.dead = true);
    // a runner that guest code stopped before it could say R is given up after a while
    let timer: ReturnType<typeof setTimeout> | undefined;
    const hello = await Promise.race([
      r.out.byte().catch(() => null),
      new Promise<null>((res) => timer = setTimeout(() => res(null), HANDSHAKE_TIMEOUT_MS)),
    ]).finally(() => {
      clearTimeout(timer);
      if (this.#warming === child) this.#warming = null;
      child.unref();
    });
    if (hello !== 0x52 /* R */) {
      const why = hello === null && !r.dead ? "it did not answer" : (await collectText(child.stderr!).catch(() => "")).trim().slice(0, 500);
      await this.ctx.killTree(r, "SIGKILL");
      child.kill("SIGKILL");
      await child.status.catch(() => {});
      this.ctx.reap(r.cg);
      this.ctx.initPid(what); // a sandbox that went away says so
      throw new TransportError(`could not enter sandbox ${this.ctx.id} to ${what}${why ? `: ${why}` : ""}`, {
        details: { id: this.ctx.id },
      });
    }
    // a runner waiting for its job holds no reader: in Bun a held reader keeps the process alive
    r.out.release();
    return r;
  }
}
