/**
 * The `record` engine (`MVM_SDK_MODE=record`): every call is recorded into
 * upstream's `RuntimeRecording` instead of executed, and written to
 * `MVM_SDK_OUT_PATH` when the process exits. Calls that would need a real
 * result (`commands.run`, reads, process output) throw UNSUPPORTED; nothing
 * is ever invented.
 *
 * @example
 * ```sh
 * MVM_SDK_MODE=record MVM_SDK_OUT_PATH=rec.json deno run -A examples/hello.ts
 * ```
 * @module
 */
import { writeFileSync } from "node:fs";
import { encodeBase64 } from "../../base64.ts";
import { ConflictError, NotFoundError, UnsupportedError } from "../../errors.ts";
import { getEnv, onExit } from "../../runtime/mod.ts";
import type { SandboxSpec } from "../../spec.ts";
import { collectBytes, erroringStream } from "../../streams.ts";
import type { Capabilities, LogEvent, ProcessStatus, SandboxInfo } from "../../types.ts";
import type { Engine, EngineFiles, EngineProcess, EngineSandbox, EngineStartOptions, WrittenFile } from "../contract.ts";
import type { EnvValue, RecordedCreate, RuntimeRecording } from "./recording.ts";

let current: RuntimeRecording | null = null;
let exitHookInstalled = false;

/**
 * The recording made so far in this process (a copy), or null when no sandbox
 * was created in record mode.
 *
 * @example Recording a script without running it
 * ```ts
 * import assert from "node:assert/strict";
 * import { currentRecording, resetRecording, Sandbox } from "@mvm/sdk";
 *
 * resetRecording();
 * await using sb = await Sandbox.create({ engine: "record", workloadId: "hello" });
 * await sb.files.write("/app/main.py", "print('hi')");
 * const rec = currentRecording();
 * assert.equal(rec?.workload_id, "hello");
 * assert.equal(rec?.ops[0].kind, "files_write");
 * ```
 */
export function currentRecording(): RuntimeRecording | null {
  return current === null ? null : structuredClone(current);
}

/**
 * Forgets the current recording, for tools that record several scripts in one
 * process (record mode records one sandbox per script).
 *
 * @example One recording after another
 * ```ts
 * import assert from "node:assert/strict";
 * import { currentRecording, resetRecording, Sandbox } from "@mvm/sdk";
 *
 * resetRecording();
 * await (await Sandbox.create({ engine: "record", workloadId: "first" })).destroy();
 * resetRecording();
 * assert.equal(currentRecording(), null);
 * await (await Sandbox.create({ engine: "record", workloadId: "second" })).destroy();
 * assert.equal(currentRecording()?.workload_id, "second");
 * ```
 */
export function resetRecording(): void {
  current = null;
}

const unsupported = (what: string) =>
  new UnsupportedError(
    `${what} cannot be recorded: record mode never executes anything. Run in live mode (unset MVM_SDK_MODE and MVM_SDK_OUT_PATH) to get results.`,
  );

function lowerCreate(spec: SandboxSpec): RecordedCreate {
  const env: Record<string, EnvValue> = {};
  const names = [...Object.keys(spec.env), ...Object.keys(spec.secrets)].sort();
  for (const k of names) {
    const s = spec.secrets[k];
    env[k] = s
      ? {
        kind: "secret_ref",
        ref: {
          name: s.name,
          mount: { kind: "env", var: k },
          allowed_hosts: s.hosts.length ? [...s.hosts] : spec.network.hosts,
          auth_type: s.type,
        },
      }
      : { kind: "literal", value: spec.env[k]! };
  }
  const create: RecordedCreate = spec.template !== undefined
    ? { template: spec.template } as RecordedCreate
    : { image: spec.image } as RecordedCreate;
  create.env = env;
  create.include = [...spec.include];
  create.tags = { ...spec.tags };
  create.ttl_seconds = spec.ttlSeconds;
  if (spec.cpu !== undefined || spec.memoryMb !== undefined || spec.rootfsSizeMb !== undefined) {
    create.resources = { cpu_cores: spec.cpu ?? 1, memory_mb: spec.memoryMb ?? 256, rootfs_size_mb: spec.rootfsSizeMb ?? 512 };
  }
  if (spec.networkGiven) create.network = spec.network.toJSON();
  return create;
}

class RecordSandbox implements EngineSandbox {
  readonly id: string;
  readonly #rec: RuntimeRecording;
  readonly #spec: SandboxSpec;
  readonly #created = new Date();
  #state: SandboxInfo["state"] = "running";
  constructor(spec: SandboxSpec, rec: RuntimeRecording) {
    this.#spec = spec;
    this.#rec = rec;
    this.id = `rec-${spec.workloadId}`;
  }
  #op(): string {
    return `${this.id}:${this.#rec.ops.length}`;
  }
  info(): Promise<SandboxInfo> {
    return Promise.resolve({
      id: this.id,
      state: this.#state,
      engine: "record",
      image: this.#spec.template ?? this.#spec.image,
      name: this.#spec.name,
      workloadId: this.#spec.workloadId,
      tags: { ...this.#spec.tags },
      createdAt: this.#created.toISOString(),
      expiresAt: new Date(this.#created.getTime() + this.#spec.ttlSeconds * 1000).toISOString(),
      ttlSeconds: this.#spec.ttlSeconds,
      detached: false,
      limits: { cpu: this.#spec.cpu, memoryMb: this.#spec.memoryMb, pidsLimit: this.#spec.pidsLimit },
    });
  }
  start(argv: string[], opts: EngineStartOptions): Promise<EngineProcess> {
    if (opts.pty) {
      return Promise.reject(
        new UnsupportedError("record mode cannot record a terminal (pty): upstream's command_start has argv and env only"),
      );
    }
    if (opts.timeoutSeconds !== undefined || opts.cwd !== undefined) {
      return Promise.reject(
        new UnsupportedError(
          "record mode cannot record cwd or timeoutSeconds on commands.start (upstream's command_start has argv and env only)",
        ),
      );
    }
    const env: Record<string, EnvValue> = {};
    for (const k of Object.keys(opts.env).sort()) env[k] = { kind: "literal", value: opts.env[k]! };
    this.#rec.ops.push({ kind: "command_start", argv: [...argv], env });
    const auditId = this.#op();
    let status: Promise<ProcessStatus> | undefined;
    const rec = this.#rec;
    return Promise.resolve({
      stdin: new WritableStream<Uint8Array>({ write: () => Promise.reject(unsupported("stdin of a recorded process")) }),
      stdout: erroringStream<Uint8Array>(unsupported("stdout of a recorded process")),
      stderr: erroringStream<Uint8Array>(unsupported("stderr of a recorded process")),
      get status() {
        return status ??= Promise.reject(unsupported(`the exit status of a recorded process (${auditId})`));
      },
      kill: () => {
        rec.ops.push({ kind: "kill" });
        return Promise.resolve();
      },
    });
  }
  readonly files: EngineFiles = {
    readStream: () => Promise.reject(unsupported("files.read")),
    write: async (path, data, opts): Promise<WrittenFile> => {
      const bytes = await collectBytes(data);
      this.#rec.ops.push({ kind: "files_write", path, bytes_b64: encodeBase64(bytes) });
      return {
        path,
        name: path.split("/").filter(Boolean).pop() ?? "",
        type: "file",
        size: bytes.length,
        mode: opts.mode,
        mtime: new Date().toISOString(),
        auditId: `${this.id}:${this.#rec.ops.length - 1}`,
      };
    },
    list: () => Promise.reject(unsupported("files.list")),
    stat: () => Promise.reject(unsupported("files.stat")),
    mkdir: () => Promise.reject(unsupported("files.mkdir")),
    remove: () => Promise.reject(unsupported("files.remove")),
    rename: () => Promise.reject(unsupported("files.rename")),
    writeTar: () => Promise.reject(unsupported("files.writeTar")),
    readTar: () => Promise.reject(unsupported("files.readTar")),
  };
  logs(): ReadableStream<LogEvent> {
    return erroringStream(unsupported("logs"));
  }
  #kill(): string {
    if (this.#state === "running") this.#rec.ops.push({ kind: "kill" });
    return this.#op();
  }
  stop(): Promise<string> {
    const id = this.#kill();
    this.#state = "stopped";
    return Promise.resolve(id);
  }
  destroy(): Promise<string> {
    const id = this.#kill();
    this.#state = "destroyed";
    return Promise.resolve(id);
  }
  detach(): Promise<string> {
    return Promise.reject(unsupported("detach"));
  }
  disconnect(): Promise<void> {
    return Promise.resolve();
  }
}

/** The record engine. @example `await recordEngine.create(spec)` */
export const recordEngine: Engine = {
  name: "record",
  capabilities(): Capabilities {
    return {
      commands: false,
      files: false,
      logs: false,
      detach: false,
      pause: false,
      snapshot: false,
      fork: false,
      limits: { cpu: true, memory: true, pids: false },
      network: "allowlist",
      pty: false,
      pauseToDisk: false,
    };
  },
  create(spec: SandboxSpec): Promise<EngineSandbox> {
    if (current !== null) {
      return Promise.reject(new ConflictError("record mode records one sandbox per script: a Sandbox.create was already recorded"));
    }
    const rec: RuntimeRecording = { workload_id: spec.workloadId, create: lowerCreate(spec), ops: [] };
    current = rec;
    const out = getEnv("MVM_SDK_OUT_PATH");
    if (out && !exitHookInstalled) {
      exitHookInstalled = true;
      onExit(() => {
        if (current) writeFileSync(out, JSON.stringify(current, null, 2) + "\n", { mode: 0o600 });
      });
    }
    return Promise.resolve(new RecordSandbox(spec, rec));
  },
  connect(id: string): Promise<EngineSandbox> {
    return Promise.reject(new NotFoundError(`record mode has no sandbox ${id} to connect to (record mode never runs sandboxes)`));
  },
  list(): Promise<SandboxInfo[]> {
    return Promise.resolve([]);
  },
};
