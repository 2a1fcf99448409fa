/**
 * The upstream `RuntimeRecording` wire shape, field for field (upstream reads
 * it with `deny_unknown_fields`), and its lowering to the Workload IR v0.1.
 *
 * @example
 * ```ts
 * import { toWorkload } from "./recording.ts";
 * const workload = toWorkload(recording); // { schema_version: "0.1", id, apps: [...] }
 * ```
 * @module
 */
import { AdmissionError } from "../../errors.ts";

/** An environment value: a literal or a secret reference. */
export type EnvValue = { kind: "literal"; value: string } | { kind: "secret_ref"; ref: RecordedSecretRef };

/** Upstream's secret reference with its binding. */
export interface RecordedSecretRef {
  name: string;
  mount: { kind: "env"; var: string } | { kind: "file"; path: string };
  allowed_hosts: string[];
  auth_type: "sigv4" | "hmac" | "bearer" | "basic";
}

/** Upstream's network section. */
export interface RecordedNetwork {
  mode: "none" | "bridge" | "host";
  egress?: { allowlist: Array<{ host: string; port: number }> };
}

/** The `create` section. Exactly one of `template` and `image` is present. */
export interface RecordedCreate {
  template?: string;
  image?: string;
  env: Record<string, EnvValue>;
  include: string[];
  tags: Record<string, string>;
  ttl_seconds: number;
  resources?: { cpu_cores: number; memory_mb: number; rootfs_size_mb: number };
  network?: RecordedNetwork;
}

/** One recorded operation. */
export type RecordedOp =
  | { kind: "command_start"; argv: string[]; env: Record<string, EnvValue> }
  | { kind: "files_write"; path: string; bytes_b64: string }
  | { kind: "kill" };

/** What record mode writes to `MVM_SDK_OUT_PATH`. */
export interface RuntimeRecording {
  workload_id: string;
  create: RecordedCreate;
  ops: RecordedOp[];
}

/** Templates upstream knows. */
export const KNOWN_TEMPLATES = ["python-3.12", "python-3.13", "node-22", "node-lts", "minimal"] as const;

/** Workload IR v0.1 command. */
export interface IrCommand {
  kind: "command";
  command: string[];
  env?: Record<string, EnvValue>;
  working_dir?: string;
}

/** Workload IR v0.1 app. */
export interface IrApp {
  name: string;
  source: { kind: "sdk_recording"; workload_id: string };
  image: { kind: "template"; name: string } | { kind: "ref"; ref: string };
  entrypoints: IrCommand[];
  resources: { cpu_cores: number; memory_mb: number; rootfs_size_mb: number };
  env?: Record<string, EnvValue>;
  network?: RecordedNetwork;
  hooks?: { before_start: IrCommand[] };
  files?: Array<{ path: string; bytes_b64: string; mode?: number }>;
}

/** Workload IR v0.1. */
export interface Workload {
  schema_version: "0.1";
  id: string;
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
 * @example `toWorkload(currentRecording()!)`
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
    entrypoints: [cmd(starts[starts.length - 1], "/app")],
    resources: create.resources ?? { cpu_cores: 1, memory_mb: 256, rootfs_size_mb: 512 },
  };
  if (Object.keys(create.env).length) app.env = create.env;
  if (create.network) app.network = create.network;
  if (starts.length > 1) app.hooks = { before_start: starts.slice(0, -1).map((o) => cmd(o)) };
  if (files.length) app.files = files;
  return { schema_version: "0.1", id: rec.workload_id, apps: [app] };
}
