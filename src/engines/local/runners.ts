/**
 * Runners: processes already inside a sandbox that run its jobs (guest commands and file-agent
 * operations), one at a time, each in a child of its own. A runner is spawned through the host-side
 * entry (`sh/enter.pl`: fresh session keyring, no inherited descriptors, its own per-process cgroup,
 * and its job slots: fifos in a host-only folder, opened before the sandbox is entered), `nsenter`
 * into the sandbox's namespaces and root through its init, `setpriv` (no capabilities,
 * `no_new_privs`), and the SDK's execute-only perl running `sh/runner.pl`, which proves it is in the
 * right sandbox and says so with one byte. It then serves up to {@linkcode SLOTS} jobs: a job costs a
 * frame written, a fork and an `exec` in the sandbox, and no process spawned on the host. A runner
 * whose job left something behind, was signalled, or used its last slot is let go (its group reaped)
 * and a spare takes over.
 *
 * @example
 * ```ts
 * import { RunnerPool } from "./runners.ts";
 * // const pool = new RunnerPool(ctx); const r = await pool.take("run a command");
 * console.log(typeof RunnerPool);
 * ```
 * @module
 */
import { mkdirSync, rmSync } from "node:fs";
import { TransportError } from "../../errors.ts";
import { type ChildProcess, type ExitStatus, runtime } from "../../runtime/mod.ts";
import { SIGNALS } from "../../signals.ts";
import { collectText } from "../../streams.ts";
import { PeekReader } from "./core.ts";
import type { Tools } from "./preflight.ts";
import { AGENT_SH, ENTER_PL, RUNNER_PL } from "./scripts.gen.ts";

/** The PATH of host-side helpers and of guest processes unless they set their own. */
export const GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/**
 * Runners kept ready per sandbox and client: one while the sandbox has run nothing, then two, so a
 * job that comes while another runs (commands at once, a stream read during a command) does not wait
 * for a spawn.
 */
const SPARES = 2;
const IDLE_SPARES = 1;

/**
 * Jobs per runner: its job slots are made when it is spawned (three fifos each). Past them it ends
 * and a spare (spawned ahead, in the background) takes over.
 */
export const SLOTS = 32;

/** How long a runner may take to say it is in place. */
const HANDSHAKE_TIMEOUT_MS = 10_000;

/** A runner: spawned, inside, waiting for a job. `ctl` carries its reports past the handshake. */
export interface Runner {
  /** The host-side entry (nsenter, which relays the runner's end): its stdin takes jobs, its stdout carries the runner's reports. */
  child: ChildProcess;
  cg: string | null;
  ctl: PeekReader;
  /** The host-only folder of its job slots' fifos. */
  slots: string;
  /** The next slot to use. */
  next: number;
  dead: boolean;
  /** Not to be given another job: something was left behind or signalled, or its slots ran out. */
  spent: boolean;
}

/**
 * One job on a runner: its streams (its slot's fifos), its start report, its status, and what
 * happens to the runner after it.
 */
export class RunnerJob {
  #status: Promise<ExitStatus> | undefined;
  #finished: Promise<number> | undefined;
  #clean = false;
  #ended = false;
  constructor(
    readonly runner: Runner,
    /** The job's stdin (null: it reads /dev/null). */
    readonly stdin: WritableStream<Uint8Array> | null,
    readonly stdout: ReadableStream<Uint8Array>,
    readonly stderr: ReadableStream<Uint8Array>,
    readonly pool: RunnerPool,
  ) {}
  /** The host-side pid of the job's way in (its runner's entry), for logs. */
  get pid(): number {
    return this.runner.child.pid;
  }
  /** The next byte the runner (or the job's shell, before the guest program runs) reports, or null. */
  report(): Promise<number | null> {
    return this.runner.ctl.byte().catch(() => null);
  }
  /** The job's exit status (read once; past any start report). */
  status(): Promise<ExitStatus> {
    return this.#status ??= jobStatus(this.runner).then(({ status, clean }) => {
      this.#clean = clean;
      this.#ended = true;
      return status;
    });
  }
  /** Signals the job's whole tree; the runner is not given another job (its group is reaped after). */
  kill(signal: string): Promise<void> {
    if (this.#ended) return Promise.resolve();
    this.runner.spent = true;
    return this.pool.ctx.killTree(this.runner, signal);
  }
  /**
   * Kills the job's whole tree and its runner's host-side entry: the status then comes at once, also when guest
   * code stopped the runner (its nsenter then stops itself and holds the report pipe open).
   */
  async abandon(): Promise<void> {
    await this.kill("SIGKILL");
    this.runner.child.kill("SIGKILL");
  }
  /**
   * Once the job is over (its streams done): the runner takes the next job, or is let go and its group
   * reaped (`reap`, or whatever the job left). Resolves to the reap's OOM-kill count, or 0.
   */
  finish(reap = false): Promise<number> {
    return this.#finished ??= this.pool.finish(this.runner, this.#ended && this.#clean && !reap);
  }
}

/** What a pool needs from its sandbox. */
export interface RunnerContext {
  id: string;
  tools: Tools;
  /** Where runners' job slots go: a host-only folder of the sandbox's state. */
  slotsDir: string;
  /** The sandbox's uid on the host (its runners open their slots' fifos as it). */
  uid: number;
  /** The pid the SDK enters through (the init), checked alive; throws when the sandbox is gone. */
  initPid(what: string): number;
  /** The cgroups a runner joins (a fresh per-process group first), or null without cgroups. */
  takeCgroups(): Promise<{ cg: string; join: string[] } | null>;
  /** Kills what is left in a per-process group and removes it; resolves to the sandbox's OOM-kill count. */
  reap(cg: string | null): Promise<number>;
  /** Signals a runner's whole tree. */
  killTree(r: Runner, signal: string): Promise<void>;
}

const SIGNAL_NAMES = new Map(Object.entries(SIGNALS).map(([k, v]) => [v, k]));

/**
 * Reads a job's status from its runner's reports ("E<wait status> <c|d>"): the wait status the
 * runner saw, and whether the job left something behind. When the runner ends first (its group was
 * killed), the status is the runner's own, as nsenter relays it.
 *
 * @example `const { status, clean } = await jobStatus(runner)`
 */
export async function jobStatus(r: Runner): Promise<{ status: ExitStatus; clean: boolean }> {
  let line = "";
  for (;;) {
    const b = await r.ctl.byte().catch(() => null);
    if (b === null) break;
    if (b === 0x0a) {
      const m = /^E(\d+) ([cd])$/.exec(line);
      if (!m) break;
      const st = Number(m[1]);
      const sig = st & 0x7f;
      const status = sig ? { code: null, signal: SIGNAL_NAMES.get(sig) ?? `SIG${sig}` } : { code: (st >> 8) & 0xff, signal: null };
      return { status, clean: m[2] === "c" };
    }
    line += String.fromCharCode(b);
    if (line.length > 40) break;
  }
  r.spent = true;
  return { status: await r.child.status, clean: false };
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
    "/.mvm/setpriv",
    "--no-new-privs",
    "--bounding-set=-all",
    "--inh-caps=-all",
    "--",
    // without cgroups the runner leads its own session, so a kill can reach the job's tree
    ...(session ? ["/.mvm/setsid"] : []),
    "/.mvm/perl",
    "-e",
    RUNNER_PL,
    "--",
    id,
    String(t.prctl),
    String(SLOTS),
    AGENT_SH,
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

  /** A runner for a job: a spare, the one on its way, or a new one (`fresh`); spares are kept warm. */
  async take(what: string, fresh = false): Promise<Runner> {
    this.#target = SPARES;
    if (fresh) return await this.spawn(what, true);
    const pop = () => {
      let r = this.#spares.pop();
      while (r && (r.dead || r.spent)) {
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

  /**
   * Starts a job on a runner: opens the host's ends of its slot (the runner holds the other ends, so
   * no open waits), then writes the frame. The caller reads the acknowledgement.
   */
  async begin(r: Runner, frame: Uint8Array, stdin: boolean): Promise<RunnerJob> {
    const slot = `${r.slots}/${r.next}`;
    r.next++;
    if (r.next >= SLOTS) r.spent = true;
    r.child.ref();
    const rt = runtime();
    const stdout = rt.openFifo(`${slot}.out`, "read");
    const stderr = rt.openFifo(`${slot}.err`, "read");
    const input = stdin ? rt.openFifo(`${slot}.in`, "write") : null;
    const job = new RunnerJob(r, input, stdout, stderr, this);
    const writer = r.child.stdin!.getWriter();
    try {
      await writer.write(frame);
    } finally {
      writer.releaseLock();
    }
    return job;
  }

  /**
   * After a job: a runner whose job ended cleanly waits for the next; any other is let go (its group
   * reaped, which ends what the job left behind) and a spare is warmed. Resolves to the group's reap
   * (the sandbox's OOM-kill count), or 0 when nothing was reaped.
   */
  finish(r: Runner, clean: boolean): Promise<number> {
    if (!clean) r.spent = true;
    if (r.spent || r.dead || this.#closed) return this.#drop(r);
    r.child.unref();
    r.ctl.release();
    this.#spares.push(r);
    return Promise.resolve(0);
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
   * Lets a runner go: at the end of its stdin it exits by itself (killing the host-side entry
   * instead would orphan the runner inside, and a dying pid namespace then waits for it); its group
   * is reaped (what a job left behind ends) and its slots' fifos removed.
   */
  #drop(r: Runner): Promise<number> {
    r.spent = true;
    r.child.stdin?.close().catch(() => {});
    r.ctl.cancel().catch(() => {});
    r.child.stderr?.cancel().catch(() => {});
    rmSync(r.slots, { recursive: true, force: true });
    if (this.#spares.length < this.#target) queueMicrotask(() => this.warm());
    return this.ctx.reap(r.cg);
  }

  /** Spawns a runner and waits for its handshake; only a `foreground` spawn keeps this process alive meanwhile. */
  async spawn(what: string, foreground: boolean): Promise<Runner> {
    const initPid = this.ctx.initPid(what);
    const groups = await this.ctx.takeCgroups();
    const dirs = groups ? [groups.cg, ...groups.join] : [];
    const slots = `${this.ctx.slotsDir}/${crypto.randomUUID().slice(0, 13)}`;
    const env: Record<string, string> = {
      PATH: GUEST_PATH,
      MVM_SLOTS_DIR: slots,
      MVM_SLOTS: String(SLOTS),
      MVM_MKNODAT: String(this.ctx.tools.mknodat),
      MVM_SLOTS_UID: String(this.ctx.uid),
    };
    dirs.forEach((d, i) => env[`MVM_CG${i + 1}`] = d);
    let child: ChildProcess;
    try {
      mkdirSync(this.ctx.slotsDir, { mode: 0o700, recursive: true });
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
    const r: Runner = {
      child,
      cg: groups?.cg ?? null,
      ctl: new PeekReader(child.stdout!),
      slots,
      next: 0,
      dead: false,
      spent: false,
    };
    child.status.then(() => r.dead = true, () => r.dead = true);
    // a runner that guest code stopped before it could say R is given up after a while
    let timer: ReturnType<typeof setTimeout> | undefined;
    const hello = await Promise.race([
      r.ctl.byte().catch(() => null),
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
      // its pipes are let go here (a sandbox destroyed while a runner was on its way ends up here)
      child.stdin?.close().catch(() => {});
      r.ctl.cancel().catch(() => {});
      child.stderr?.cancel().catch(() => {});
      rmSync(slots, { recursive: true, force: true });
      this.ctx.reap(r.cg);
      this.ctx.initPid(what); // a sandbox that went away says so
      throw new TransportError(`could not enter sandbox ${this.ctx.id} to ${what}${why ? `: ${why}` : ""}`, {
        details: { id: this.ctx.id },
      });
    }
    // a runner waiting for its job holds no reader: in Bun a held reader keeps the process alive
    r.ctl.release();
    return r;
  }
}
