/**
 * The mvmctl engine: the engine contract over upstream's `mvmctl machine …` verbs, spawned only
 * through the runtime shim. Selected with `engine: "mvmctl"`, or `MVM_SDK_MODE=live` with
 * `MVM_CLI_BIN` set. Files: `argv.ts` (every verb's argv), `cli.ts` (spawning, bounds, failures),
 * `wire.ts` (the boot envelope and JSON outputs, read fail-closed), `process.ts`, `files.ts`.
 *
 * What it refuses before any call: a create `env` or `secrets` (persistent `machine run` refuses
 * `--env` upstream), limits and options `machine run` has no flag for, and guest process and file
 * verbs on a machine whose `build_mode` is not `dev` (upstream's prod machines refuse them).
 *
 * @example
 * ```ts
 * import { Sandbox } from "../../../mod.ts";
 * // with MVM_CLI_BIN naming mvmctl (or our CLI, which speaks its machine verbs over the local engine)
 * await using sb = await Sandbox.create({ engine: "mvmctl", ttl: "10m" });
 * console.log((await sb.commands.run(["echo", "hi"])).stdout);
 * ```
 * @module
 */
import { type AuditEntry, type AuditLog, readAudit } from "../../audit.ts";
import { NotFoundError, TransportError, UnsupportedError } from "../../errors.ts";
import { hostUid } from "../../runtime/mod.ts";
import type { SandboxSpec } from "../../spec.ts";
import type { Capabilities, LogEvent, SandboxInfo } from "../../types.ts";
import { utf8Decoder } from "../../streams.ts";
import type {
  Engine,
  EngineFiles,
  EngineProcess,
  EngineSandbox,
  EngineSnapshotOptions,
  EngineSnapshots,
  EngineStartOptions,
} from "../contract.ts";
import { DEFAULT_SNAPSHOT_RETENTION_SECONDS, type RestoreInfo, type SnapshotInfo } from "../../snapshot.ts";
import { machineArgv } from "./argv.ts";
import { cliConfig, MachineCli } from "./cli.ts";
import { machineFiles } from "./files.ts";
import { startMachineProcess } from "./process.ts";
import {
  type CheckpointRecord,
  type MachineRecord,
  parseCheckpoint,
  parseColdResult,
  parseEnvelope,
  parseRecords,
  stateOf,
} from "./wire.ts";
import { auditLog, stateBase } from "../local/state.ts";

/**
 * The SDK side's audit chain for machines: the state root's (`$MVM_STATE_DIR/audit`, the local engine's
 * too), so every result's `auditId` names a signed entry and `verifyAudit()` covers both engines.
 */
async function machineAudit(): Promise<AuditLog> {
  const uid = await hostUid();
  return auditLog(`${stateBase(uid)}/sandboxes`, uid);
}

/** What the mvmctl engine offers through the machine verbs. */
export function mvmctlCapabilities(): Capabilities {
  return {
    commands: true,
    files: true,
    logs: true,
    detach: true,
    pause: true,
    // `machine checkpoint create --class fs-quick` / `checkpoint fork --new-id N --boot`
    snapshot: true,
    fork: true,
    limits: { cpu: false, memory: false, pids: false },
    network: "allowlist",
    // upstream's `machine proc start` has no terminal flag (upstream-contract §3)
    pty: false,
    // no verb flag guarantees the live-memory tier
    pauseToDisk: false,
  };
}

let shared: { key: string; cli: MachineCli } | undefined;
/** The CLI for the current environment (re-read on each call, so a changed MVM_CLI_BIN takes effect). */
function currentCli(): MachineCli {
  const cfg = cliConfig();
  const key = JSON.stringify(cfg);
  if (shared?.key !== key) shared = { key, cli: new MachineCli(cfg) };
  return shared.cli;
}

/** Every create option has its effect through `machine run`, or is refused here, before any call. */
function refuseUnsupported(spec: SandboxSpec): void {
  const refuse = (field: string, why: string) => {
    throw new UnsupportedError(`${field}: ${why}`, { details: { field } });
  };
  if (Object.keys(spec.env).length > 0) {
    refuse(
      "env",
      "the mvmctl engine boots persistent machines, and upstream's persistent `machine run` refuses --env; pass env per command instead",
    );
  }
  if (Object.keys(spec.secrets).length > 0) {
    refuse(
      "secrets",
      "`mvmctl machine run` takes no secret bindings (they would travel as --env, which it refuses); use record mode for secrets",
    );
  }
  for (const f of ["cpu", "memoryMb", "pidsLimit", "tmpSizeMb", "rootfsSizeMb"] as const) {
    if (spec[f] !== undefined) refuse(f, "`mvmctl machine run` has no flag for it, so the mvmctl engine cannot honour it; omit it");
  }
  if (spec.include.length > 0) refuse("include", "is a build-time option of record mode; the mvmctl engine would ignore it");
}

function randomName(): string {
  const a = "abcdefghijklmnopqrstuvwxyz0123456789";
  return "sdk-" + Array.from(crypto.getRandomValues(new Uint8Array(10)), (b) => a[b % 36]).join("");
}

function infoOf(r: MachineRecord | undefined, id: string, name: string): SandboxInfo {
  const created = r?.createdAt ?? "";
  const expires = r?.expiresAt ?? "";
  const ttl = created && expires ? Math.round((Date.parse(expires) - Date.parse(created)) / 1000) : 0;
  return {
    id,
    state: r ? stateOf(r.status) : "destroyed",
    engine: "mvmctl",
    image: r?.image ?? "",
    name,
    tags: { ...(r?.tags ?? {}) },
    createdAt: created,
    expiresAt: expires,
    ttlSeconds: ttl,
    detached: true,
    limits: { cpu: r?.cpus, memoryMb: r?.memoryMib },
  };
}

/** A checkpoint's metadata as a SnapshotInfo; `auditId` is the SDK side's entry that recorded it. */
function snapshotOf(c: CheckpointRecord, auditId: string): SnapshotInfo {
  return {
    id: c.id,
    ...(c.tag !== null ? { name: c.tag } : {}),
    sandboxId: c.vm,
    class: c.class,
    createdAt: c.createdAt,
    expiresAt: c.expiresAt,
    sizeBytes: c.sizeBytes,
    digests: { root: c.metaDigest, content: c.content },
    parent: c.parent,
    sealed: true,
    epoch: c.epoch,
    skipped: c.skipped,
    auditId,
  };
}

/** One machine. */
class MachineSandbox implements EngineSandbox {
  readonly files: EngineFiles;
  constructor(
    readonly cli: MachineCli,
    readonly id: string,
    readonly vm: string,
    readonly buildMode: "dev" | "prod",
    readonly log: AuditLog,
    readonly restoredFrom?: RestoreInfo | undefined,
  ) {
    this.files = machineFiles(this);
  }

  /**
   * `machine checkpoint create <vm> --class fs-quick [--tag NAME] --json`, its metadata read
   * fail-closed. A retention other than the default is refused before any call: the verb has no
   * flag for it (the CLI keeps its own).
   */
  async snapshot(opts: EngineSnapshotOptions): Promise<SnapshotInfo> {
    if (opts.retentionSeconds !== DEFAULT_SNAPSHOT_RETENTION_SECONDS) {
      throw new UnsupportedError(
        "retention: `mvmctl machine checkpoint create` has no retention flag, so the mvmctl engine cannot honour it; omit it " +
          "(the CLI keeps the checkpoint under its own policy) and remove it with Snapshot.delete",
        { details: { field: "retention" } },
      );
    }
    const c = parseCheckpoint(await this.cli.json(machineArgv.checkpointCreate(this.vm, opts.class, opts.name)));
    if (c.tag !== (opts.name ?? null) && opts.name !== undefined) {
      throw new TransportError(`mvmctl machine checkpoint create: asked for tag ${opts.name}, got ${JSON.stringify(c.tag)} (fail closed)`, {
        details: { id: c.id },
      });
    }
    return snapshotOf(c, this.record("snapshot.created", { snapshot: c.id, class: c.class, root: c.metaDigest }));
  }

  /** Appends an entry about this machine (labels: its id, `source: "sdk"`, `engine: "mvmctl"`) and returns its id. */
  record(event: string, data: Record<string, unknown> = {}): string {
    return this.log.append(event, data, { sandbox: this.id, source: "sdk", engine: "mvmctl" });
  }

  audit(): ReadableStream<AuditEntry> {
    this.log.ingest();
    return readAudit(this.log.dir, { sandbox: this.id });
  }

  capabilities(): Capabilities {
    const c = mvmctlCapabilities();
    return this.buildMode === "dev" ? c : { ...c, commands: false, files: false };
  }

  /** Guest verbs are dev-only: a prod machine is refused here, before any call. */
  guard(what: string): void {
    if (this.buildMode !== "dev") {
      throw new UnsupportedError(
        `machine ${this.vm} is a prod build: guest process and file verbs are dev-only upstream, so the SDK cannot ${what} in it`,
        { details: { vm: this.vm, buildMode: this.buildMode } },
      );
    }
  }

  async #record(): Promise<MachineRecord | undefined> {
    return parseRecords(await this.cli.json(machineArgv.ls())).find((r) => r.id === this.id || r.name === this.vm);
  }

  async running(): Promise<boolean> {
    const r = await this.#record();
    return r !== undefined && stateOf(r.status) === "running";
  }

  async info(): Promise<SandboxInfo> {
    return infoOf(await this.#record(), this.id, this.vm);
  }

  start(argv: string[], opts: EngineStartOptions): Promise<EngineProcess> {
    if (opts.pty) {
      throw new UnsupportedError(
        "the mvmctl engine cannot give a command a terminal: upstream's `mvmctl machine proc start` has no tty/pty flag " +
          "(and `proc stdin` no resize); start it without pty, or use the local engine",
        { details: { verb: "machine proc start", option: "pty" } },
      );
    }
    this.guard("start a process");
    return startMachineProcess(this, argv, opts);
  }

  logs(opts: { follow: boolean }): ReadableStream<LogEvent> {
    const args = machineArgv.logs(this.vm, opts.follow);
    let child: Awaited<ReturnType<MachineCli["spawn"]>> | undefined;
    let lines: ReadableStreamDefaultReader<string> | undefined;
    let seq = 0;
    return new ReadableStream<LogEvent>({
      start: async () => {
        child = await this.cli.spawn(args);
        child.stderr!.cancel().catch(() => {});
        lines = child.stdout!.pipeThrough(utf8Decoder()).pipeThrough(splitLines()).getReader();
      },
      pull: async (c) => {
        for (;;) {
          const r = await lines!.read();
          if (r.done) {
            const s = await child!.status;
            if (s.code !== 0 && s.code !== null) {
              c.error(
                new NotFoundError(`machine ${this.vm}: mvmctl machine logs exited with code ${s.code}`, { details: { vm: this.vm } }),
              );
            } else c.close();
            return;
          }
          if (r.value.trim() === "") continue;
          c.enqueue(toEvent(r.value, seq++));
          return;
        }
      },
      cancel: async () => {
        child?.kill("SIGKILL");
        await lines?.cancel().catch(() => {});
      },
    });
  }

  async stop(): Promise<string> {
    await this.cli.capture(machineArgv.stop(this.vm));
    return this.record("stopped");
  }

  /**
   * `machine pause <vm>`, its result read fail-closed. `{ toDisk: true }` is refused before any
   * call: the verb has no flag that demands a memory snapshot, and a CLI may pause in RAM (ours
   * does, with the cgroup freezer), so the tier asked for could not be guaranteed.
   */
  async pause(opts: { toDisk?: boolean }): Promise<string> {
    if (opts.toDisk) {
      throw new UnsupportedError(
        "pause({ toDisk: true }): `mvmctl machine pause` has no flag that demands a memory snapshot on disk, so the mvmctl engine " +
          "cannot guarantee that tier; use pause() without toDisk",
        { details: { vm: this.vm } },
      );
    }
    const { stdout } = await this.cli.capture(machineArgv.pause(this.vm));
    parseColdResult(new TextDecoder().decode(stdout), [this.vm, this.id], "paused");
    return this.record("paused");
  }

  /** `machine resume <vm>`, its result read fail-closed. */
  async resume(): Promise<string> {
    const { stdout } = await this.cli.capture(machineArgv.resume(this.vm));
    parseColdResult(new TextDecoder().decode(stdout), [this.vm, this.id], "resumed");
    return this.record("resumed");
  }

  /** `machine set-ttl <vm> <N>s`: the machine now ends N seconds from now. */
  async setTtl(seconds: number): Promise<string> {
    await this.cli.capture(machineArgv.setTtl(this.vm, seconds));
    return this.record("ttl.set", { ttlSeconds: seconds });
  }

  async destroy(): Promise<string> {
    await this.cli.capture(machineArgv.rm(this.vm));
    return this.record("destroyed", { reason: "destroy" });
  }

  detach(): Promise<string> {
    // machines boot detached (`machine run -d`) and live until their TTL: nothing to change
    return Promise.resolve(this.record("detached"));
  }

  disconnect(): Promise<void> {
    return Promise.resolve();
  }
}

/** A line of `machine logs` as a LogEvent: a JSON object with a `type` keeps its fields, any other line is a `console` event. */
function toEvent(line: string, seq: number): LogEvent {
  try {
    const v = JSON.parse(line);
    if (typeof v === "object" && v !== null && !Array.isArray(v) && typeof v.type === "string") {
      return {
        ...v,
        id: typeof v.id === "string" ? v.id : "",
        seq,
        time: typeof v.time === "string" ? v.time : new Date().toISOString(),
        type: v.type,
      };
    }
  } catch { /* a plain line */ }
  return { id: "", seq, time: new Date().toISOString(), type: "console", line };
}

/** Text chunks to lines (without their newline). */
function splitLines(): TransformStream<string, string> {
  let rest = "";
  return new TransformStream({
    transform(chunk, c) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      for (const p of parts) c.enqueue(p);
    },
    flush(c) {
      if (rest) c.enqueue(rest);
    },
  });
}

/**
 * A create from a checkpoint: `machine checkpoint fork <id> --new-id NAME --boot` (its boot
 * envelope read fail-closed), then `machine set-ttl` for the lease. What `checkpoint fork` has no
 * flag for (tags, network rules, a template or image) is refused before any call.
 */
async function createFromCheckpoint(cli: MachineCli, spec: SandboxSpec, snap: string): Promise<EngineSandbox> {
  const refuse = (field: string) => {
    throw new UnsupportedError(
      `${field}: \`mvmctl machine checkpoint fork\` has no flag for it, so a create from a snapshot through the mvmctl engine cannot honour it; omit it`,
      { details: { field } },
    );
  };
  if (Object.keys(spec.tags).length > 0) refuse("tags");
  if (spec.network.rules.length > 0) refuse("network");
  if (spec.template !== undefined) refuse("template");
  await cli.version();
  const name = spec.name ?? randomName();
  const { stdout } = await cli.capture(machineArgv.checkpointFork(snap, name));
  let env;
  try {
    env = parseEnvelope(new TextDecoder().decode(stdout));
    await cli.capture(machineArgv.setTtl(name, spec.ttlSeconds));
  } catch (e) {
    await cli.capture(machineArgv.rm(name)).catch(() => {});
    throw e;
  }
  const log = await machineAudit();
  // the CLI checked (or did not check) the checkpoint; the SDK side cannot tell, so it does not claim it
  const auditId = log.append("snapshot.unverified", { snapshot: snap }, { sandbox: env.vmId, source: "sdk", engine: "mvmctl" });
  const restored: RestoreInfo = { snapshotId: snap, verified: false, restore: "copy", rehashed: false, auditId };
  const m = new MachineSandbox(cli, env.vmId, name, env.buildMode, log, restored);
  m.record("created", { vm: name, snapshot: snap, ttlSeconds: spec.ttlSeconds });
  return m;
}

async function create(spec: SandboxSpec): Promise<EngineSandbox> {
  refuseUnsupported(spec);
  const cli = currentCli();
  if (spec.snapshot) return await createFromCheckpoint(cli, spec, spec.snapshot.id);
  await cli.version();
  const name = spec.name ?? randomName();
  const { stdout } = await cli.capture(machineArgv.run({
    name,
    template: spec.template,
    image: spec.template === undefined ? spec.image : undefined,
    ttlSeconds: spec.ttlSeconds,
    allowHosts: spec.network.rules.map((r) => `${r.host}:${r.port}`),
    tags: spec.tags,
  }));
  let env;
  try {
    env = parseEnvelope(new TextDecoder().decode(stdout));
  } catch (e) {
    // the machine may be up although its envelope is refused: do not leave it running
    await cli.capture(machineArgv.rm(name)).catch(() => {});
    throw e;
  }
  const m = new MachineSandbox(cli, env.vmId, name, env.buildMode, await machineAudit());
  m.record("created", { vm: name, image: spec.template ?? spec.image, ttlSeconds: spec.ttlSeconds, tags: spec.tags });
  return m;
}

async function connect(id: string): Promise<EngineSandbox> {
  const cli = currentCli();
  await cli.version();
  const r = parseRecords(await cli.json(machineArgv.ls())).find((x) => x.id === id || x.name === id);
  if (!r || stateOf(r.status) === "destroyed") {
    throw new NotFoundError(`no live machine ${id} (mvmctl machine ls does not list it)`, { details: { id } });
  }
  return new MachineSandbox(cli, r.id, r.name, r.buildMode, await machineAudit());
}

async function list(filter: { tags?: Record<string, string> }): Promise<SandboxInfo[]> {
  const cli = currentCli();
  await cli.version();
  const tags = filter.tags ?? {};
  return parseRecords(await cli.json(machineArgv.ls(tags)))
    .filter((r) => Object.entries(tags).every(([k, v]) => r.tags[k] === v))
    .map((r) => infoOf(r, r.id, r.name))
    .filter((i) => i.state !== "destroyed");
}

/** The checkpoints `machine checkpoint ls/rm` keep, as the engine's snapshot store. */
const snapshots: EngineSnapshots = {
  async list() {
    const cli = currentCli();
    await cli.version();
    const v = await cli.json(machineArgv.checkpointLs());
    if (!Array.isArray(v)) throw new TransportError("mvmctl machine checkpoint ls --json did not print a JSON array", { details: {} });
    return v.map((c) => snapshotOf(parseCheckpoint(c), ""));
  },
  async get(id) {
    const hit = (await snapshots.list()).find((s) => s.id === id);
    if (!hit) throw new NotFoundError(`no checkpoint ${id} (mvmctl machine checkpoint ls does not list it)`, { details: { id } });
    return hit;
  },
  async delete(id) {
    const cli = currentCli();
    await cli.version();
    await cli.capture(machineArgv.checkpointRm(id));
    return (await machineAudit()).append("snapshot.deleted", { snapshot: id }, { source: "sdk", engine: "mvmctl" });
  },
};

/** The mvmctl engine. @example `await mvmctlEngine.list({})` */
export const mvmctlEngine: Engine = { name: "mvmctl", capabilities: mvmctlCapabilities, create, connect, list, snapshots };
