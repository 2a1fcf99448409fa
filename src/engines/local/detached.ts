/**
 * Detached commands on the local engine: `commands.start(argv, { detached: true })` hands the
 * command to a keeper process of its own (`keeper.ts`), so it outlives the caller; `commands.list()`
 * lists them and `commands.connect(id)` re-attaches from any handle or process, reading the
 * output from where it joins (or from the oldest byte the spool keeps), bounded (see `spool.ts`).
 *
 * @example
 * ```ts
 * import { CMD_ID_RE } from "./detached.ts";
 * console.log(CMD_ID_RE.test("cmd-0a1b2c3d4e5f")); // true
 * ```
 * @module
 */
import {
  ConflictError,
  type ErrorCode,
  InternalError,
  InvalidInputError,
  IsADirectoryError,
  NoSpaceError,
  NotADirectoryError,
  NotFoundError,
  PermissionDeniedError,
  TransportError,
  UnsupportedError,
} from "../../errors.ts";
import { runtime, scriptArgv } from "../../runtime/mod.ts";
import { denoFlags } from "./preflight.ts";
import type { CommandInfo, ProcessStatus } from "../../types.ts";
import type { EngineProcess, EngineStartOptions } from "../contract.ts";
import type { KeeperJob } from "./keeper.ts";
import type { LocalSandbox } from "./sandbox.ts";
import { Spool, type Spool as SpoolT, tailSpool } from "./spool.ts";

/** Makes the keeper's fifo and holds it open (fd 9, inherited by the keeper), then runs the keeper. */
const KEEPER_SH = 'f=$1; shift; PATH=/usr/bin:/bin mkfifo -m 600 "$f" || exit 125; exec 9<>"$f"; exec "$@"';

/** What a detached command's id looks like. */
export const CMD_ID_RE: RegExp = /^cmd-[a-z0-9]{12}$/;
/** How long a keeper may take to start its command. */
const START_TIMEOUT_MS = 30_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function newCmdId(): string {
  const a = "abcdefghijklmnopqrstuvwxyz0123456789";
  return "cmd-" + Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => a[b % 36]).join("");
}

/** The keeper's program: this folder's `keeper.ts` (or `keeper.js` in the npm build). */
function keeperPath(): string {
  const self = new URL(import.meta.url);
  return new URL(self.pathname.endsWith(".js") ? "./keeper.js" : "./keeper.ts", self).pathname;
}

const CLASSES: Partial<Record<string, new (m: string, o?: { details?: Record<string, unknown> }) => Error>> = {
  NOT_FOUND: NotFoundError,
  INVALID_INPUT: InvalidInputError,
  CONFLICT: ConflictError,
  PERMISSION_DENIED: PermissionDeniedError,
  NOT_A_DIRECTORY: NotADirectoryError,
  IS_A_DIRECTORY: IsADirectoryError,
  NO_SPACE: NoSpaceError,
  UNSUPPORTED: UnsupportedError,
  TRANSPORT: TransportError,
  INTERNAL: InternalError,
};

function rebuild(e: { code: string; message: string }): Error {
  const C = CLASSES[e.code as ErrorCode] ?? TransportError;
  return new C(e.message, { details: { code: e.code } });
}

/** Starts a detached command and returns its handle (reading from its first byte). */
export async function startDetached(sb: LocalSandbox, argv: string[], opts: EngineStartOptions): Promise<EngineProcess> {
  if (opts.signal) throw new UnsupportedError("a detached command outlives this process, so an AbortSignal cannot stop it; use kill()");
  const id = newCmdId();
  const spool = Spool.create(sb.dir.path, id);
  const job: KeeperJob = { sandboxId: sb.id, cmdId: id, argv, env: opts.env };
  if (opts.cwd !== undefined) job.cwd = opts.cwd;
  if (opts.timeoutSeconds !== undefined) job.timeoutSeconds = opts.timeoutSeconds;
  // on Deno the keeper gets the engine's scoped permissions, never more than it needs
  const [cmd, ...args] = scriptArgv(keeperPath(), denoFlags(sb.tools));
  // /bin/sh makes the fifo the keeper holds open for its whole life (its liveness, asked without
  // signalling a pid), then setsid: a session of its own, so neither this process's end nor a
  // terminal's ^C reaches it
  const child = await runtime().spawn(
    "/bin/sh",
    ["-c", KEEPER_SH, "mvm-keeper", spool.keeperFifo, sb.tools.setsid, cmd!, ...args],
    { stdin: "piped", stdout: "null", stderr: "null" },
  );
  spool.writeMeta({ id, argv0: argv[0] ?? "", argc: argv.length, startedAt: new Date().toISOString(), keeperPid: child.pid });
  const w = child.stdin!.getWriter();
  await w.write(new TextEncoder().encode(JSON.stringify(job)));
  await w.close();
  let exited = false;
  child.status.then(() => exited = true);
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (let wait = 2; !spool.started(); wait = Math.min(wait * 2, 50)) {
    const st = spool.readStatus();
    if (st?.error) throw rebuild(st.error);
    if (st) break;
    if (exited || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new TransportError(`the keeper of a detached command ${exited ? "died" : "did not start it within 30 s"} in sandbox ${sb.id}`, {
        details: { id: sb.id },
      });
    }
    await sleep(wait);
  }
  child.unref();
  sb.dir.appendEvent("process.detached", { command: id, argv0: argv[0], argc: argv.length });
  return connectDetached(sb, id, "start");
}

/** Why nothing more will come from a spool without a status, or null while its keeper lives. */
function deadCheck(sb: LocalSandbox, spool: SpoolT): () => Error | null {
  const meta = spool.readMeta();
  return () => {
    if (spool.readStatus()) return null;
    if (!sb.dir.exists() || !spool.exists()) return new TransportError(`sandbox ${sb.id} is gone; the command's output may be incomplete`);
    if (meta && !spool.keeperAlive() && !spool.readStatus()) {
      return new TransportError(`the keeper of command ${meta.id} died; its output may be incomplete and its status is unknown`);
    }
    return null;
  };
}

/** Re-attaches to a detached command by id. */
export function connectDetached(sb: LocalSandbox, id: string, from: "start" | "now"): EngineProcess {
  if (!CMD_ID_RE.test(id)) {
    throw new InvalidInputError(`not a command id: ${JSON.stringify(id)} (ids look like cmd- and 12 of a-z, 0-9)`, {
      details: { field: "id" },
    });
  }
  const spool = new Spool(`${sb.dir.path}/procs/${id}`);
  if (!spool.exists()) throw new NotFoundError(`no detached command ${id} in sandbox ${sb.id}`, { details: { id } });
  const dead = deadCheck(sb, spool);
  let status: Promise<ProcessStatus> | undefined;
  const waitStatus = async (): Promise<ProcessStatus> => {
    for (let wait = 2;; wait = Math.min(wait * 2, 50)) {
      const st = spool.readStatus();
      if (st?.error) throw rebuild(st.error);
      if (st?.status) return st.status as ProcessStatus;
      const d = dead();
      if (d) throw d;
      await sleep(wait);
    }
  };
  let writer: ReturnType<SpoolT["claimStdin"]> | undefined;
  const stdin = new WritableStream<Uint8Array>({
    async write(chunk) {
      await (writer ??= spool.claimStdin()).write(chunk);
    },
    close() {
      (writer ??= spool.claimStdin()).close();
    },
  });
  return {
    id,
    detached: true,
    stdin,
    stdout: tailSpool(spool, "out", from, dead),
    stderr: tailSpool(spool, "err", from, dead),
    get status() {
      if (!status) {
        status = waitStatus();
        status.catch(() => {});
      }
      return status;
    },
    kill(signal = "SIGTERM") {
      if (spool.readStatus()) return Promise.resolve();
      try {
        spool.requestSignal(signal);
      } catch (e) {
        if (spool.exists()) return Promise.reject(e);
      }
      return Promise.resolve();
    },
  } satisfies EngineProcess;
}

/** The detached commands of a sandbox, oldest first. */
export function listDetached(sb: LocalSandbox): CommandInfo[] {
  const out: CommandInfo[] = [];
  for (const id of Spool.list(sb.dir.path)) {
    const spool = new Spool(`${sb.dir.path}/procs/${id}`);
    const meta = spool.readMeta();
    if (!meta) continue;
    const st = spool.readStatus();
    const info: CommandInfo = {
      id,
      argv0: meta.argv0,
      argc: meta.argc,
      startedAt: meta.startedAt,
      running: !st && spool.keeperAlive(),
    };
    if (st?.status) info.status = st.status as ProcessStatus;
    out.push(info);
  }
  return out;
}
