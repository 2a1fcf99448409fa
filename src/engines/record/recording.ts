/**
 * The upstream `RuntimeRecording` wire shape, field for field (upstream reads
 * it with `deny_unknown_fields`), and its lowering to the Workload IR v0.1.
 *
 * @example Lowering a recording
 * ```ts
 * import assert from "node:assert/strict";
 * import { type RuntimeRecording, toWorkload } from "@mvm/sdk";
 *
 * const recording: RuntimeRecording = {
 *   workload_id: "hello",
 *   create: { template: "python-3.12", env: {}, include: [], tags: {}, ttl_seconds: 1800 },
 *   ops: [
 *     { kind: "files_write", path: "/app/main.py", bytes_b64: btoa("print('hi')") },
 *     { kind: "command_start", argv: ["python3", "/app/main.py"], env: {} },
 *   ],
 * };
 * const workload = toWorkload(recording);
 * assert.equal(workload.schema_version, "0.1");
 * assert.deepEqual(workload.apps[0].entrypoints[0].command, ["python3", "/app/main.py"]);
 * ```
 * @module
 */
import { AdmissionError } from "../../errors.ts";

/**
 * An environment value: a literal or a secret reference.
 *
 * @example A secret appears as a reference, never a value
 * ```ts
 * import assert from "node:assert/strict";
 * import { currentRecording, type EnvValue, resetRecording, Sandbox, SecretRef } from "@mvm/sdk";
 *
 * resetRecording();
 * const secrets = { TOKEN: SecretRef.from("gh-token", { hosts: ["api.github.com"] }) };
 * await using _sb = await Sandbox.create({ engine: "record", env: { MODE: "dev" }, secrets });
 * const env: Record<string, EnvValue> = currentRecording()!.create.env;
 * assert.deepEqual(env.MODE, { kind: "literal", value: "dev" });
 * assert.equal(env.TOKEN.kind, "secret_ref");
 * ```
 */
export type EnvValue = { kind: "literal"; value: string } | { kind: "secret_ref"; ref: RecordedSecretRef };

/**
 * Upstream's secret reference with its binding.
 *
 * @example A secret bound to an environment variable
 * ```ts
 * import assert from "node:assert/strict";
 * import type { RecordedSecretRef } from "@mvm/sdk";
 *
 * const ref: RecordedSecretRef = {
 *   name: "gh-token",
 *   mount: { kind: "env", var: "TOKEN" },
 *   allowed_hosts: ["api.github.com"],
 *   auth_type: "bearer",
 * };
 * assert.equal(ref.mount.kind, "env");
 * ```
 */
export interface RecordedSecretRef {
  /** The secret's name in the host's secret store. */
  name: string;
  /** Where the guest sees it: an environment variable or a file. */
  mount: { kind: "env"; var: string } | { kind: "file"; path: string };
  /** Hosts the secret may be sent to. */
  allowed_hosts: string[];
  /** How the egress boundary presents it. */
  auth_type: "sigv4" | "hmac" | "bearer" | "basic";
}

/**
 * Upstream's network section: what {@linkcode NetworkPolicy.toJSON} gives.
 *
 * @example An allowlist as upstream reads it
 * ```ts
 * import assert from "node:assert/strict";
 * import { NetworkPolicy, type RecordedNetwork } from "@mvm/sdk";
 *
 * const network: RecordedNetwork = NetworkPolicy.denyByDefault().allowHttps("pypi.org").toJSON();
 * assert.deepEqual(network, { mode: "bridge", egress: { allowlist: [{ host: "pypi.org", port: 443 }] } });
 * ```
 */
export interface RecordedNetwork {
  /** `none`: no network; `bridge`: egress through the allowlist; `host`: the host's network. */
  mode: "none" | "bridge" | "host";
  /** The allowed destinations, with `bridge`. */
  egress?: { allowlist: Array<{ host: string; port: number }> };
}

/**
 * The `create` section. Exactly one of `template` and `image` is present.
 *
 * @example What `Sandbox.create` records
 * ```ts
 * import assert from "node:assert/strict";
 * import { currentRecording, type RecordedCreate, resetRecording, Sandbox } from "@mvm/sdk";
 *
 * resetRecording();
 * await using _sb = await Sandbox.create("python-3.12", { engine: "record", ttl: "1h", cpu: 2 });
 * const create: RecordedCreate = currentRecording()!.create;
 * assert.equal(create.template, "python-3.12");
 * assert.equal(create.ttl_seconds, 3600);
 * assert.deepEqual(create.resources, { cpu_cores: 2, memory_mb: 256, rootfs_size_mb: 512 });
 * ```
 */
export interface RecordedCreate {
  /** Upstream template name, when created from one. */
  template?: string;
  /** Image reference, when created from one (e.g. `"host"`). */
  image?: string;
  /** Environment of every guest process, secrets as references. */
  env: Record<string, EnvValue>;
  /** Host paths to include. */
  include: string[];
  /** Free-form labels. */
  tags: Record<string, string>;
  /** The lease in seconds. */
  ttl_seconds: number;
  /** Resources, when any was given (the others take upstream's defaults). */
  resources?: { cpu_cores: number; memory_mb: number; rootfs_size_mb: number };
  /** The network policy, when one was given. */
  network?: RecordedNetwork;
}

/**
 * One recorded operation: a process started, a file written, or a kill.
 *
 * @example The operations of a recorded script
 * ```ts
 * import assert from "node:assert/strict";
 * import { currentRecording, type RecordedOp, resetRecording, Sandbox } from "@mvm/sdk";
 *
 * resetRecording();
 * const sb = await Sandbox.create({ engine: "record" });
 * await sb.files.write("/app/main.py", "print('hi')");
 * await sb.commands.start(["python3", "/app/main.py"]);
 * await sb.destroy();
 * const ops: RecordedOp[] = currentRecording()!.ops;
 * assert.deepEqual(ops.map((o) => o.kind), ["files_write", "command_start", "kill"]);
 * ```
 */
export type RecordedOp =
  | { kind: "command_start"; argv: string[]; env: Record<string, EnvValue> }
  | { kind: "files_write"; path: string; bytes_b64: string }
  | { kind: "kill" };

/**
 * What record mode writes to `MVM_SDK_OUT_PATH` (and {@linkcode currentRecording} returns).
 *
 * @example A recording is JSON upstream reads as it is
 * ```ts
 * import assert from "node:assert/strict";
 * import { currentRecording, resetRecording, type RuntimeRecording, Sandbox } from "@mvm/sdk";
 *
 * resetRecording();
 * await using _sb = await Sandbox.create({ engine: "record", workloadId: "agent-tool" });
 * const rec: RuntimeRecording = currentRecording()!;
 * assert.equal(rec.workload_id, "agent-tool");
 * assert.deepEqual(Object.keys(rec), ["workload_id", "create", "ops"]);
 * ```
 */
export interface RuntimeRecording {
  /** The workload id given at create (or the SDK's default). */
  workload_id: string;
  /** How the sandbox was created. */
  create: RecordedCreate;
  /** What the script did, in order. */
  ops: RecordedOp[];
}

/**
 * Templates upstream knows; {@linkcode toWorkload} refuses any other.
 *
 * @example Checking a template name
 * ```ts
 * import assert from "node:assert/strict";
 * import { KNOWN_TEMPLATES } from "@mvm/sdk";
 *
 * assert.ok((KNOWN_TEMPLATES as readonly string[]).includes("python-3.12"));
 * ```
 */
export const KNOWN_TEMPLATES = ["python-3.12", "python-3.13", "node-22", "node-lts", "minimal"] as const;

/**
 * Workload IR v0.1 command.
 *
 * @example The entrypoint runs in `/app`
 * ```ts
 * import assert from "node:assert/strict";
 * import { type IrCommand, type RuntimeRecording, toWorkload } from "@mvm/sdk";
 *
 * const recording: RuntimeRecording = {
 *   workload_id: "hello",
 *   create: { template: "python-3.12", env: {}, include: [], tags: {}, ttl_seconds: 1800 },
 *   ops: [
 *     { kind: "files_write", path: "/app/main.py", bytes_b64: btoa("print('hi')") },
 *     { kind: "command_start", argv: ["python3", "/app/main.py"], env: {} },
 *   ],
 * };
 * const entry: IrCommand = toWorkload(recording).apps[0].entrypoints[0];
 * assert.deepEqual(entry, { kind: "command", command: ["python3", "/app/main.py"], working_dir: "/app" });
 * ```
 */
export interface IrCommand {
  /** Always `"command"`. */
  kind: "command";
  /** The argv. */
  command: string[];
  /** Extra environment, when the recording had any. */
  env?: Record<string, EnvValue>;
  /** Working directory (`/app` for the entrypoint). */
  working_dir?: string;
}

/**
 * Workload IR v0.1 app: one sandbox of a workload.
 *
 * @example Files and default resources
 * ```ts
 * import assert from "node:assert/strict";
 * import { type IrApp, type RuntimeRecording, toWorkload } from "@mvm/sdk";
 *
 * const recording: RuntimeRecording = {
 *   workload_id: "hello",
 *   create: { template: "python-3.12", env: {}, include: [], tags: {}, ttl_seconds: 1800 },
 *   ops: [
 *     { kind: "files_write", path: "/app/main.py", bytes_b64: btoa("print('hi')") },
 *     { kind: "command_start", argv: ["python3", "/app/main.py"], env: {} },
 *   ],
 * };
 * const app: IrApp = toWorkload(recording).apps[0];
 * assert.deepEqual(app.files, [{ path: "/app/main.py", bytes_b64: btoa("print('hi')") }]);
 * assert.deepEqual(app.resources, { cpu_cores: 1, memory_mb: 256, rootfs_size_mb: 512 });
 * ```
 */
export interface IrApp {
  /** The app's name (the workload id). */
  name: string;
  /** Where the app came from: an SDK recording. */
  source: { kind: "sdk_recording"; workload_id: string };
  /** A known template, or an image reference. */
  image: { kind: "template"; name: string } | { kind: "ref"; ref: string };
  /** The process the app runs (the recording's last `command_start`). */
  entrypoints: IrCommand[];
  /** CPU, memory and root filesystem (defaults 1 CPU, 256 MB, 512 MB). */
  resources: { cpu_cores: number; memory_mb: number; rootfs_size_mb: number };
  /** Environment of every process, when any. */
  env?: Record<string, EnvValue>;
  /** The network policy, when one was given. */
  network?: RecordedNetwork;
  /** Commands run before the entrypoint (the earlier `command_start`s, in order). */
  hooks?: { before_start: IrCommand[] };
  /** Files to place before anything runs. */
  files?: Array<{ path: string; bytes_b64: string; mode?: number }>;
}

/**
 * Workload IR v0.1: what upstream admits and boots.
 *
 * @example One app per recording
 * ```ts
 * import assert from "node:assert/strict";
 * import { type RuntimeRecording, toWorkload, type Workload } from "@mvm/sdk";
 *
 * const recording: RuntimeRecording = {
 *   workload_id: "hello",
 *   create: { template: "python-3.12", env: {}, include: [], tags: {}, ttl_seconds: 1800 },
 *   ops: [
 *     { kind: "files_write", path: "/app/main.py", bytes_b64: btoa("print('hi')") },
 *     { kind: "command_start", argv: ["python3", "/app/main.py"], env: {} },
 *   ],
 * };
 * const workload: Workload = toWorkload(recording);
 * assert.equal(workload.id, "hello");
 * assert.equal(workload.apps.length, 1);
 * ```
 */
export interface Workload {
  /** Always `"0.1"`. */
  schema_version: "0.1";
  /** The workload id. */
  id: string;
  /** The workload's apps (one per recording). */
  apps: IrApp[];
}

/**
 * Lowers a recording to the Workload IR with upstream's rules: the last
 * `command_start` is the entrypoint (working dir `/app`), earlier ones are
 * `before_start` hooks in order, each `files_write` a file to place, `kill`
 * dropped, default resources 1 CPU / 256 MB / 512 MB rootfs. Throws
 * {@linkcode AdmissionError} with `details.error` `"NoEntrypoint"` or
 * `"UnknownBaseImage"`.
 *
 * @example The last command is the entrypoint, earlier ones are hooks
 * ```ts
 * import assert from "node:assert/strict";
 * import { type RuntimeRecording, toWorkload } from "@mvm/sdk";
 *
 * const recording: RuntimeRecording = {
 *   workload_id: "build-then-run",
 *   create: { image: "host", env: {}, include: [], tags: {}, ttl_seconds: 600 },
 *   ops: [
 *     { kind: "command_start", argv: ["pip", "install", "-r", "requirements.txt"], env: {} },
 *     { kind: "command_start", argv: ["python3", "main.py"], env: {} },
 *     { kind: "kill" },
 *   ],
 * };
 * const [app] = toWorkload(recording).apps;
 * assert.deepEqual(app.entrypoints[0].command, ["python3", "main.py"]);
 * assert.deepEqual(app.hooks?.before_start.map((c) => c.command[0]), ["pip"]);
 * assert.deepEqual(app.image, { kind: "ref", ref: "host" });
 * ```
 */
export function toWorkload(rec: RuntimeRecording): Workload {
  const { create } = rec;
  let image: IrApp["image"];
  if (create.template !== undefined) {
    if (!(KNOWN_TEMPLATES as readonly string[]).includes(create.template)) {
      throw new AdmissionError(
        `UnknownBaseImage: template ${JSON.stringify(create.template)} is not one of ${KNOWN_TEMPLATES.join(", ")}`,
        { details: { error: "UnknownBaseImage", template: create.template } },
      );
    }
    image = { kind: "template", name: create.template };
  } else {
    image = { kind: "ref", ref: create.image ?? "" };
  }
  const starts = rec.ops.filter((o): o is Extract<RecordedOp, { kind: "command_start" }> => o.kind === "command_start");
  if (starts.length === 0) {
    throw new AdmissionError("NoEntrypoint: the recording has no command_start; start the workload's process with commands.start", {
      details: { error: "NoEntrypoint" },
    });
  }
  const cmd = (o: (typeof starts)[number], wd?: string): IrCommand => ({
    kind: "command",
    command: [...o.argv],
    ...(Object.keys(o.env).length ? { env: o.env } : {}),
    ...(wd ? { working_dir: wd } : {}),
  });
  const files = rec.ops.flatMap((o) => o.kind === "files_write" ? [{ path: o.path, bytes_b64: o.bytes_b64 }] : []);
  const app: IrApp = {
    name: rec.workload_id,
    source: { kind: "sdk_recording", workload_id: rec.workload_id },
    image,
    entrypoints: [cmd(starts[starts.length - 1]!, "/app")],
    resources: create.resources ?? { cpu_cores: 1, memory_mb: 256, rootfs_size_mb: 512 },
  };
  if (Object.keys(create.env).length) app.env = create.env;
  if (create.network) app.network = create.network;
  if (starts.length > 1) app.hooks = { before_start: starts.slice(0, -1).map((o) => cmd(o)) };
  if (files.length) app.files = files;
  return { schema_version: "0.1", id: rec.workload_id, apps: [app] };
}
