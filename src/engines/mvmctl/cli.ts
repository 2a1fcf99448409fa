/**
 * Spawning `mvmctl` through the runtime shim: which binary (`MVM_CLI_BIN`, default `mvmctl` on
 * PATH), the bounds every call runs under (`MVM_MACHINE_TIMEOUT_SEC`, `MVM_MACHINE_MAX_OUTPUT_BYTES`),
 * the `--version` check, and the one rule for failures: a non-zero exit of the CLI is the CLI's
 * failure (TRANSPORT with argv, exit code and stderr), never a guest's result. When the CLI's last
 * stderr line is `mvm: CODE: message` with a stable SDK error code (our own CLI prints that), the
 * error gets that code's class, with the same details.
 *
 * @example A captured call
 * ```ts
 * import { MachineCli } from "./cli.ts";
 * const cli = new MachineCli({ bin: "mvmctl", timeoutMs: 60_000, maxOutput: 1 << 24 });
 * // const { stdout } = await cli.capture(["machine", "ls", "--json"]);
 * console.log(cli.config.bin);
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
  type SandboxError,
  TimeoutError,
  TransportError,
  UnsupportedError,
} from "../../errors.ts";
import { type ChildProcess, getEnv, runtime } from "../../runtime/mod.ts";

/** The binary and the bounds of every call. */
export interface CliConfig {
  /** `MVM_CLI_BIN`, default `mvmctl`. */
  bin: string;
  /** `MVM_MACHINE_TIMEOUT_SEC` × 1000 (default 600 s): the longest a call that is not a stream may take. */
  timeoutMs: number;
  /** `MVM_MACHINE_MAX_OUTPUT_BYTES` (default 16 MiB): the most a captured call may print. */
  maxOutput: number;
}

const DEFAULT_TIMEOUT_SEC = 600;
const DEFAULT_MAX_OUTPUT = 16 * 1024 * 1024;
/** How much of a failing call's stderr is kept for its error. */
const STDERR_KEEP = 64 * 1024;

function positiveEnv(name: string, fallback: number): number {
  const raw = getEnv(name);
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) {
    throw new InvalidInputError(`${name} must be a positive number, got ${JSON.stringify(raw)}`, { details: { field: name } });
  }
  return n;
}

/** The configuration from the environment. @example `cliConfig().bin` */
export function cliConfig(): CliConfig {
  return {
    bin: getEnv("MVM_CLI_BIN") || "mvmctl",
    timeoutMs: positiveEnv("MVM_MACHINE_TIMEOUT_SEC", DEFAULT_TIMEOUT_SEC) * 1000,
    maxOutput: Math.floor(positiveEnv("MVM_MACHINE_MAX_OUTPUT_BYTES", DEFAULT_MAX_OUTPUT)),
  };
}

const CODE_CLASSES: Partial<Record<ErrorCode, new (m: string, o?: ConstructorParameters<typeof SandboxError>[1]) => SandboxError>> = {
  NOT_FOUND: NotFoundError,
  INVALID_INPUT: InvalidInputError,
  CONFLICT: ConflictError,
  PERMISSION_DENIED: PermissionDeniedError,
  NOT_A_DIRECTORY: NotADirectoryError,
  IS_A_DIRECTORY: IsADirectoryError,
  NO_SPACE: NoSpaceError,
  UNSUPPORTED: UnsupportedError,
  TIMEOUT: TimeoutError,
  INTERNAL: InternalError,
};

/**
 * The error for a CLI call that exited non-zero: TRANSPORT with `{argv, exitCode, stderr}`, or the
 * class a `mvm: CODE: message` last stderr line names.
 *
 * @example `cliFailure(["mvmctl", "machine", "ls"], 2, "boom\n")`
 */
export function cliFailure(argv: string[], exitCode: number | null, stderr: string, signal: string | null = null): SandboxError {
  const lines = stderr.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  const last = lines.at(-1) ?? "";
  const details = { argv, exitCode, signal, stderr };
  const m = /^mvm: ([A-Z_]+): (.+)$/.exec(last);
  const cls = m ? CODE_CLASSES[m[1] as ErrorCode] : undefined;
  if (m && cls) {
    const msg = m[2] ?? "";
    // field names from an INVALID_INPUT line are kept for callers that look at details.field
    const field = /^([A-Za-z_.]+): /.exec(msg)?.[1];
    return new cls(msg, { details: field && m[1] === "INVALID_INPUT" ? { ...details, field } : details });
  }
  const how = signal ? `was killed by ${signal}` : `exited with code ${exitCode}`;
  const shown = argv.slice(0, 4).join(" ");
  return new TransportError(`${shown} … ${how}${last ? `: ${last.slice(0, 500)}` : " (no message on stderr)"}`, { details });
}

/** What a captured call printed. */
export interface Captured {
  stdout: Uint8Array;
  stderr: string;
}

/** The `mvmctl` binary, spawned only through the runtime shim. */
export class MachineCli {
  #version: Promise<string> | undefined;
  constructor(readonly config: CliConfig) {}

  /** Spawns the CLI; a missing binary is a NotFoundError that names `MVM_CLI_BIN`. */
  async spawn(args: string[], o: { stdin?: boolean; stdout?: boolean } = {}): Promise<ChildProcess> {
    try {
      return await runtime().spawn(this.config.bin, args, {
        stdin: o.stdin ? "piped" : "null",
        stdout: o.stdout === false ? "null" : "piped",
        stderr: "piped",
      });
    } catch (e) {
      if (e instanceof NotFoundError) {
        throw new NotFoundError(
          `the mvmctl engine cannot find its CLI ${JSON.stringify(this.config.bin)}: install mvmctl, or set MVM_CLI_BIN to its path`,
          { cause: e, details: { binary: this.config.bin } },
        );
      }
      throw e;
    }
  }

  /** `mvmctl --version`, checked once: anything but `mvmctl X.Y.Z` is refused. */
  version(): Promise<string> {
    return this.#version ??= (async () => {
      const { stdout } = await this.capture(["--version"]);
      const line = new TextDecoder().decode(stdout).split("\n")[0]?.trim() ?? "";
      if (!/^mvmctl \d+\.\d+\.\d+(\S*)( .*)?$/.test(line)) {
        throw new UnsupportedError(
          `${this.config.bin} --version printed ${JSON.stringify(line.slice(0, 120))}, not "mvmctl X.Y.Z": ` +
            `MVM_CLI_BIN must name an mvmctl binary (or a CLI that speaks its machine verbs)`,
          { details: { binary: this.config.bin, version: line.slice(0, 120) } },
        );
      }
      return line;
    })().catch((e) => {
      this.#version = undefined;
      throw e;
    });
  }

  /**
   * Runs a call to its end and returns what it printed; stdin, when given, is piped in. Bounded by
   * the configured timeout and output cap; a non-zero exit throws {@linkcode cliFailure}.
   */
  async capture(args: string[], stdin?: ReadableStream<Uint8Array>, opts: { timeout?: boolean } = {}): Promise<Captured> {
    const child = await this.spawn(args, { stdin: stdin !== undefined });
    const argv = [this.config.bin, ...args];
    let timedOut = false;
    let over = false;
    const timer = opts.timeout === false ? undefined : setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, this.config.timeoutMs);
    const feeding = stdin ? stdin.pipeTo(child.stdin!).catch(() => {}) : Promise.resolve();
    const out = readCapped(child.stdout!, this.config.maxOutput, () => {
      over = true;
      child.kill("SIGKILL");
    });
    const err = readTail(child.stderr!, STDERR_KEEP);
    const [status, stdout, stderr] = await Promise.all([child.status, out, err, feeding]);
    clearTimeout(timer);
    if (timedOut) {
      throw new TimeoutError(
        `${argv.slice(0, 4).join(" ")} … took longer than MVM_MACHINE_TIMEOUT_SEC (${this.config.timeoutMs / 1000} s) and was killed`,
        { details: { argv, stderr } },
      );
    }
    if (over) {
      throw new TransportError(
        `${argv.slice(0, 4).join(" ")} … printed more than MVM_MACHINE_MAX_OUTPUT_BYTES (${this.config.maxOutput} bytes) and was killed`,
        { details: { argv, stderr } },
      );
    }
    if (status.code !== 0) throw cliFailure(argv, status.code, stderr, status.signal);
    return { stdout, stderr };
  }

  /** A captured call's stdout as JSON. */
  async json(args: string[]): Promise<unknown> {
    const { stdout } = await this.capture(args);
    const text = new TextDecoder().decode(stdout).trim();
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new TransportError(
        `${this.config.bin} ${args.slice(0, 3).join(" ")} printed something that is not JSON: ${text.slice(0, 200)}`,
        {
          cause: e,
          details: { argv: [this.config.bin, ...args] },
        },
      );
    }
  }
}

/** Reads a stream whole, calling `over()` and stopping once it passes `max` bytes. */
async function readCapped(s: ReadableStream<Uint8Array>, max: number, over: () => void): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const c of s) {
    n += c.length;
    if (n > max) {
      over();
      await s.cancel().catch(() => {});
      break;
    }
    parts.push(c);
  }
  const out = new Uint8Array(Math.min(n, max));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Reads a stream whole, keeping its last `keep` bytes as text. */
export async function readTail(s: ReadableStream<Uint8Array>, keep: number): Promise<string> {
  let tail = new Uint8Array(0);
  for await (const c of s) {
    const joined = new Uint8Array(tail.length + c.length);
    joined.set(tail);
    joined.set(c, tail.length);
    tail = joined.length > keep ? joined.slice(joined.length - keep) : joined;
  }
  return new TextDecoder().decode(tail);
}
