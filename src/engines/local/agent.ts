/**
 * The file agent from the host's side: runs one `sh/agent.sh` operation on a runner, feeds it a
 * data stream with backpressure, and turns its failure into a typed error. Error classes come from
 * the agent's own codes, or from the errno text of a tool's message (the part after its last
 * ": "), never from text a guest-chosen file name could carry.
 *
 * @example
 * ```ts
 * import { classifyErrno } from "./agent.ts";
 * console.log(classifyErrno("rm: cannot remove 'No such file or directory/x': Directory not empty")); // "CONFLICT"
 * ```
 * @module
 */
import {
  ConflictError,
  InternalError,
  InvalidInputError,
  IsADirectoryError,
  NoSpaceError,
  NotADirectoryError,
  NotFoundError,
  PermissionDeniedError,
  type SandboxError,
  TransportError,
} from "../../errors.ts";
import { hasStoppedProcess } from "./cgroups.ts";
import { readBytes, readText, type SandboxCore } from "./core.ts";
import { OUTPUT_BUFFER } from "./output.ts";
import type { RunnerJob } from "./runners.ts";

const ERROR_CLASSES: Record<string, new (m: string, o?: { details?: Record<string, unknown> }) => SandboxError> = {
  NOT_FOUND: NotFoundError,
  NOT_A_DIRECTORY: NotADirectoryError,
  IS_A_DIRECTORY: IsADirectoryError,
  PERMISSION_DENIED: PermissionDeniedError,
  NO_SPACE: NoSpaceError,
  CONFLICT: ConflictError,
  INVALID_INPUT: InvalidInputError,
  INTERNAL: InternalError,
};

const ERRNO_TABLE: Array<[RegExp, string]> = [
  [/^No such file or directory$/, "NOT_FOUND"],
  [/^Not a directory$/, "NOT_A_DIRECTORY"],
  [/^Is a directory$|^cannot overwrite directory/, "IS_A_DIRECTORY"],
  [/^(Permission denied|Read-only file system|Operation not permitted)$/, "PERMISSION_DENIED"],
  [/^(No space left on device|Disk quota exceeded)$/, "NO_SPACE"],
  [/^(File exists|Directory not empty|Device or resource busy)$/, "CONFLICT"],
  [/^(File name too long|Too many levels of symbolic links|Invalid argument)$/, "INVALID_INPUT"],
];

/** The category of a tool's message, from its errno text only. @example `classifyErrno("mkdir: x: File exists") // "CONFLICT"` */
export function classifyErrno(message: string): string {
  const last = message.trim().split("\n").filter(Boolean).pop() ?? "";
  const errno = last.slice(last.lastIndexOf(": ") + 2).trim();
  return ERRNO_TABLE.find(([re]) => re.test(errno))?.[1] ?? "INTERNAL";
}

/** The typed error of a failed agent operation. @example `agentError("mvm-error NOT_FOUND No such file or directory", "read", "/x")` */
export function agentError(stderr: string, op: string, path: string): SandboxError {
  // only the agent's own reply, which starts its stderr; a tool's message may carry guest-chosen names
  const m = /^mvm-error (\S+) ([\s\S]*)/.exec(stderr);
  const code = m?.[1] !== undefined && m[1] !== "?" ? m[1] : classifyErrno(m?.[2] ?? stderr);
  const detail = (m?.[2] ?? stderr).trim().split("\n").pop()?.slice(0, 300) ?? "";
  const Cls = ERROR_CLASSES[code] ?? InternalError;
  if (code === "PERMISSION_DENIED" && /: Read-only file system$/.test(detail)) {
    return new Cls(
      `files.${op} ${JSON.stringify(path)}: the path is read-only in the sandbox (the host's system folders such as /usr, /bin and ` +
        `/etc are mounted read-only); write under /app, /root, /tmp or another folder of the sandbox's own`,
      { details: { path, op, readOnly: true } },
    );
  }
  return new Cls(`files.${op} ${JSON.stringify(path)}: ${detail || "failed"}`, { details: { path, op } });
}

/**
 * Copies `input` into the agent's stdin with backpressure. When the source fails, the agent's tree
 * is killed while its stdin is still open, so it can never take the end of a broken stream for the
 * end of the data and commit half a file; the source's error is returned. When the agent stops
 * reading (it failed, e.g. no space), the source is cancelled and the agent's own error speaks.
 */
async function feed(input: ReadableStream<Uint8Array>, j: RunnerJob): Promise<unknown> {
  const reader = input.getReader();
  const writer = j.stdin!.getWriter();
  for (;;) {
    let chunk: Awaited<ReturnType<ReadableStreamDefaultReader<Uint8Array>["read"]>>;
    try {
      chunk = await reader.read();
    } catch (e) {
      await j.abandon();
      await writer.abort(e).catch(() => {});
      return e ?? new Error("the data stream failed");
    }
    if (chunk.done) {
      await writer.close().catch(() => {});
      return undefined;
    }
    try {
      await writer.write(chunk.value);
    } catch {
      await reader.cancel().catch(() => {});
      await writer.abort().catch(() => {});
      return undefined;
    }
  }
}

/** How often a file operation in flight looks for a helper in a stop; two looks in a row that find one end it. */
export const STOP_CHECK_MS = 1000;

/**
 * Ends a file operation whose helper guest code stopped (SIGSTOP, a job-control stop): once a second while
 * the SDK waits on the operation (`waiting`), the runner's group is searched for a process in a stop (one `sh`), and when two looks
 * in a row find one (and the sandbox is not paused), `onStopped` gets the error to fail with. Without this a
 * read, write or listing would wait for good, and the host program with it. Returns the watch's end.
 */
function watchStopped(
  core: SandboxCore,
  j: RunnerJob,
  op: string,
  path: string,
  onStopped: (e: Error) => void,
  waiting: () => boolean = () => true,
): () => void {
  let strikes = 0, busy = false, over = false;
  const look = async () => {
    if (busy || over) return;
    // a stream's helper blocked on a reader that does not read is not looked at (nor a process spawned for it)
    if (!waiting()) return void (strikes = 0);
    busy = true;
    try {
      const found = !core.dir.has("paused") && await hasStoppedProcess(j.runner.cg, j.runner.child.pid).catch(() => false);
      strikes = found ? strikes + 1 : 0;
      if (strikes >= 2 && !over) {
        over = true;
        clearInterval(timer);
        onStopped(
          new TransportError(
            `files.${op} ${JSON.stringify(path)}: guest code stopped the SDK's helper in the sandbox (SIGSTOP or a job-control ` +
              `stop); the helper was ended and nothing is reported done. Guest code runs as the sandbox's user and can signal it`,
            { details: { path, op, stoppedByGuest: true } },
          ),
        );
      }
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void look(), STOP_CHECK_MS);
  // a watch never keeps the host program alive on its own
  (timer as unknown as { unref?: () => void }).unref?.();
  return () => {
    over = true;
    clearInterval(timer);
  };
}

/** Runs an agent op in the sandbox and returns its stdout (bytes: file names need not be UTF-8); `input` feeds its stdin. @example `await agent(core, "stat", ["/app"], "/app")` */
export async function agent(
  core: SandboxCore,
  op: string,
  args: string[],
  path: string,
  input?: ReadableStream<Uint8Array>,
  nonce: string = crypto.randomUUID().slice(0, 8),
  signal?: AbortSignal,
): Promise<Uint8Array> {
  const j = await core.exec({ kind: "agent", op, args, nonce }, input !== undefined, `files.${op}`);
  // an abort kills the agent's tree and its runner (whose stdin a stopped agent may never read again): nothing
  // is committed, and the feed's blocked write fails
  const onAbort = () => void j.abandon();
  signal?.addEventListener("abort", onAbort, { once: true });
  if (signal?.aborted) onAbort();
  // a helper guest code stopped is ended the same way, with an error that says so
  let stopped: Error | undefined;
  const unwatch = watchStopped(core, j, op, path, (e) => {
    stopped = e;
    onAbort();
  });
  let inputError: unknown;
  const feeding = input ? feed(input, j).then((e) => void (inputError = e)) : Promise.resolve();
  const [stdout, stderr, s] = await Promise.all([readBytes(j.stdout.getReader()), readText(j.stderr.getReader()), j.status(), feeding])
    .finally(() => {
      signal?.removeEventListener("abort", onAbort);
      unwatch();
    });
  j.finish(signal?.aborted || stopped !== undefined);
  if (signal?.aborted && inputError === undefined) inputError = signal.reason;
  if (stopped && inputError === undefined) inputError = stopped;
  if (inputError !== undefined && op === "write") {
    // the killed agent could not remove its temporary file: its name carries this write's nonce
    const dir = args[0]!.slice(0, args[0]!.lastIndexOf("/")) || "/";
    await agent(core, "cleanup", [dir, nonce], path).catch(() => {});
  }
  if (inputError !== undefined) {
    throw inputError instanceof Error
      ? inputError
      : new InvalidInputError(`files.${op}: the data stream failed: ${String(inputError)}`, { details: { path } });
  }
  const dead = core.deathError(`files.${op}`);
  if (dead) throw dead;
  if (s.signal !== null) {
    throw new TransportError(`files.${op} ${JSON.stringify(path)}: the SDK's helper was killed (${s.signal}); nothing is reported done`, {
      details: { path, op, signal: s.signal },
    });
  }
  if (s.code !== 0) throw agentError(stderr, op, path);
  return stdout;
}

/**
 * Streams an agent op's stdout. The first chunk (or the end) is awaited before returning, so a bad
 * path rejects with its typed error instead of handing back a stream that fails on first read.
 *
 * @example `const tar = await agentStream(core, "tarout", ["/app"], "/app")`
 */
export async function agentStream(
  core: SandboxCore,
  op: string,
  args: string[],
  path: string,
  signal?: AbortSignal,
): Promise<ReadableStream<Uint8Array>> {
  const j = await core.exec({ kind: "agent", op, args, nonce: "0" }, false, `files.${op}`);
  const stderrText = readText(j.stderr.getReader());
  const out = j.stdout.getReader();
  // a helper (or runner) guest code stopped is killed; the stream (or the call, before the first byte) fails
  // saying so. `pulling`: the SDK waits on the helper (a stream nobody reads is not looked at)
  let stopped: Error | undefined;
  let pulling = true;
  const unwatch = watchStopped(core, j, op, path, (e) => {
    stopped = e;
    void j.abandon();
  }, () => pulling);
  // an abort ends the helper whether or not its first byte came (guest code may have stopped it before)
  const end = async () => {
    signal?.removeEventListener("abort", onAbort);
    unwatch();
    await out.cancel().catch(() => {});
    await j.abandon();
    await j.status();
    j.finish(true);
  };
  const onAbort = () => void end();
  signal?.addEventListener("abort", onAbort, { once: true });
  if (signal?.aborted) onAbort();
  const finish = async (): Promise<SandboxError | Error | null> => {
    signal?.removeEventListener("abort", onAbort);
    // the status is waited on under the watch too: its runner may be the process guest code stopped
    pulling = true;
    const s = await j.status();
    unwatch();
    await stderrText.catch(() => "");
    j.finish(stopped !== undefined);
    if (stopped) return stopped;
    const dead = core.deathError(`files.${op}`);
    if (dead) return dead;
    if (s.code === 0) return null;
    const stderr = await stderrText;
    // tar's own failure (the agent's replies start with "mvm-error"): an entry it could not read (a file the
    // guest made unreadable) is missing from a stream that otherwise looks whole; exit 1 is a file that
    // changed while it was read, which the stream holds as read
    if (op === "tarout" && !stderr.startsWith("mvm-error") && s.code !== 1) {
      const said = stderr.trim().split("\n").find((l) => !/Exiting with failure status/.test(l)) ?? "";
      return new TransportError(
        `files.readTar ${JSON.stringify(path)}: the sandbox's tar could not read every entry (exit ${s.code}: ` +
          `${JSON.stringify(said.slice(0, 200))}); the stream is incomplete`,
        { details: { path, op, exitCode: s.code } },
      );
    }
    return agentError(stderr, op, path);
  };
  const first = await out.read();
  pulling = false;
  if (first.done) {
    const e = await finish();
    if (e) throw e;
    return new ReadableStream<Uint8Array>({ start: (c) => c.close() });
  }
  let pending: Uint8Array | undefined = first.value;
  return new ReadableStream<Uint8Array>({
    pull: async (c) => {
      if (pending) {
        c.enqueue(pending);
        pending = undefined;
        return;
      }
      pulling = true;
      const chunk = await out.read().catch(() => ({ done: true as const, value: undefined }));
      pulling = false;
      if (!chunk.done) return c.enqueue(chunk.value);
      const e = await finish();
      if (e) c.error(e);
      else c.close();
    },
    cancel: end,
  }, OUTPUT_BUFFER);
}
