/**
 * What `mvmctl machine …` prints, read fail-closed: the boot envelope of `machine run --up-json`,
 * the records of `machine ls --json`, and the JSON of `fs ls` / `fs stat`. Anything of another
 * shape is a TRANSPORT error naming what was wrong, never a guess.
 *
 * @example The boot envelope
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseEnvelope } from "./wire.ts";
 * const e = parseEnvelope('{"schema_version":1,"vm_id":"sbx-abc","build_mode":"dev"}\n');
 * assert.deepEqual(e, { vmId: "sbx-abc", buildMode: "dev" });
 * ```
 * @module
 */
import { TransportError } from "../../errors.ts";
import type { FileInfo, SandboxState } from "../../types.ts";

/** What a boot returned. */
export interface Envelope {
  vmId: string;
  buildMode: "dev" | "prod";
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * The `--up-json` envelope: the last line of stdout that is JSON (progress goes to stderr). Only
 * `schema_version` 1, a non-empty `vm_id` and `build_mode` `dev` or `prod` pass.
 *
 * @example `parseEnvelope(stdoutText).vmId`
 */
export function parseEnvelope(stdout: string): Envelope {
  const lines = stdout.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  const bad = (why: string) =>
    new TransportError(`mvmctl machine run --up-json: ${why}; refusing the machine (fail closed)`, {
      details: { stdout: stdout.slice(0, 1000) },
    });
  if (lines.length === 0) throw bad("printed no envelope on stdout");
  let v: unknown;
  try {
    v = JSON.parse(lines.at(-1)!);
  } catch {
    throw bad(`the last line of stdout is not JSON: ${JSON.stringify(lines.at(-1)!.slice(0, 200))}`);
  }
  if (!isObject(v)) throw bad("the envelope is not a JSON object");
  if (v.schema_version !== 1) throw bad(`unknown schema_version ${JSON.stringify(v.schema_version)} (this SDK reads 1)`);
  if (typeof v.vm_id !== "string" || v.vm_id.trim() === "") throw bad("vm_id is missing or empty");
  if (v.build_mode !== "dev" && v.build_mode !== "prod") throw bad(`unknown build_mode ${JSON.stringify(v.build_mode)} (dev or prod)`);
  return { vmId: v.vm_id, buildMode: v.build_mode };
}

/** One `machine ls --json` record, as the engine uses it. */
export interface MachineRecord {
  name: string;
  id: string;
  status: string;
  /** Only `"dev"` is dev; anything else (missing, unknown) counts as prod: fail closed. */
  buildMode: "dev" | "prod";
  image: string;
  tags: Record<string, string>;
  createdAt: string;
  expiresAt: string;
  cpus?: number | undefined;
  memoryMib?: number | undefined;
}

/** The records of `machine ls --json`; an entry without a string `name` is refused. @example `parseRecords(json)` */
export function parseRecords(v: unknown): MachineRecord[] {
  if (!Array.isArray(v)) throw new TransportError("mvmctl machine ls --json did not print a JSON array", { details: { got: typeof v } });
  return v.map((r, i) => {
    if (!isObject(r) || typeof r.name !== "string" || r.name === "") {
      throw new TransportError(`mvmctl machine ls --json: record ${i} has no name`, { details: { record: r } });
    }
    const tags: Record<string, string> = {};
    if (isObject(r.tags)) { for (const [k, val] of Object.entries(r.tags)) if (typeof val === "string") tags[k] = val; }
    const str = (x: unknown) => typeof x === "string" ? x : typeof x === "number" ? new Date(x * 1000).toISOString() : "";
    return {
      name: r.name,
      id: typeof r.id === "string" && r.id !== "" ? r.id : r.name,
      status: typeof r.status === "string" ? r.status : "unknown",
      buildMode: r.build_mode === "dev" ? "dev" : "prod",
      image: typeof r.source === "string" ? r.source : "",
      tags,
      createdAt: str(r.created_at),
      expiresAt: str(r.expires_at),
      cpus: typeof r.cpus === "number" ? r.cpus : undefined,
      memoryMib: typeof r.memory_mib === "number" ? r.memory_mib : undefined,
    };
  });
}

/** A listing status as an SDK state (`starting` → `creating`, `failed` → `destroyed`). @example `stateOf("running")` */
export function stateOf(status: string): SandboxState {
  switch (status) {
    case "running":
    case "warm":
      return "running";
    case "starting":
      return "creating";
    case "stopped":
      return "stopped";
    case "paused":
      return "paused";
    case "sleeping":
      return "sleeping";
    case "restoring":
      return "restoring";
    default:
      return "destroyed";
  }
}

function kindOf(k: unknown): FileInfo["type"] {
  if (k === "file" || k === "regular") return "file";
  if (k === "dir" || k === "directory") return "dir";
  if (k === "symlink" || k === "link") return "symlink";
  return "other";
}

function mtimeOf(m: unknown): string {
  if (typeof m === "number" && Number.isFinite(m)) return new Date(m * 1000).toISOString();
  if (typeof m === "string" && !Number.isNaN(Date.parse(m))) return new Date(m).toISOString();
  return new Date(0).toISOString();
}

const baseName = (p: string) => p.replace(/\/+$/, "").split("/").at(-1) || "/";
const join = (dir: string, name: string) => `${dir.replace(/\/+$/, "")}/${name}`;

/**
 * `fs stat --json` (`{canonical_path, kind, size, mode, mtime}`) as a FileInfo; `path` is the path
 * asked for. @example `parseStat(json, "/app/a.txt")`
 */
export function parseStat(v: unknown, path: string): FileInfo {
  if (!isObject(v) || typeof v.size !== "number") {
    throw new TransportError(`mvmctl machine fs stat --json printed no stat record for ${path}`, { details: { got: v } });
  }
  return {
    path,
    name: baseName(path),
    type: kindOf(v.kind),
    size: v.size,
    mode: typeof v.mode === "number" ? v.mode & 0o7777 : 0,
    mtime: mtimeOf(v.mtime),
  };
}

/** `fs ls --json` (`[{name, kind, size}]`, plus `mode`/`mtime` when the CLI gives them). @example `parseList(json, "/app")` */
export function parseList(v: unknown, dir: string): FileInfo[] {
  if (!Array.isArray(v)) {
    throw new TransportError(`mvmctl machine fs ls --json printed no array for ${dir}`, { details: { got: typeof v } });
  }
  return v.map((e) => {
    if (!isObject(e) || typeof e.name !== "string" || e.name === "" || e.name.includes("/")) {
      throw new TransportError(`mvmctl machine fs ls --json: an entry of ${dir} has no usable name`, { details: { entry: e } });
    }
    return {
      path: join(dir, e.name),
      name: e.name,
      type: kindOf(e.kind),
      size: typeof e.size === "number" ? e.size : 0,
      mode: typeof e.mode === "number" ? e.mode & 0o7777 : 0,
      mtime: mtimeOf(e.mtime),
    };
  });
}

/** What `machine pause` / `machine resume` said, read from its plain-text result line. */
export interface ColdResult {
  /** `paused` or `resumed`. */
  state: "paused" | "resumed";
  /** The numbers in the parenthesis (`epoch`, `vmstate`, `mem`), when it has them. */
  epoch?: number;
  vmstateBytes?: number;
  memBytes?: number;
}

/**
 * Reads `machine pause`/`resume`'s result (`<vm>: paused (epoch N, vmstate X B, mem Y B)`,
 * `<vm>: resumed …`), fail-closed: a call that exited 0 but does not say `<vm>: <expected>` on a
 * line of its own is refused, since the machine's state is then unknown.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseColdResult } from "./wire.ts";
 * assert.deepEqual(parseColdResult("web: paused (epoch 3, vmstate 10 B, mem 20 B)\n", ["web"], "paused"), {
 *   state: "paused", epoch: 3, vmstateBytes: 10, memBytes: 20,
 * });
 * ```
 */
export function parseColdResult(text: string, vms: string[], want: "paused" | "resumed"): ColdResult {
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    const colon = line.indexOf(": ");
    if (colon < 0 || !vms.includes(line.slice(0, colon))) continue;
    const m = /^(paused|resumed)(?: \((.*)\))?$/.exec(line.slice(colon + 2));
    if (!m || m[1] !== want) continue;
    const out: ColdResult = { state: want };
    const num = (k: string) => {
      const n = new RegExp(`(?:^|, )${k} (\\d+)`).exec(m[2] ?? "")?.[1];
      return n === undefined ? undefined : Number(n);
    };
    const epoch = num("epoch"), vmstate = num("vmstate"), mem = num("mem");
    if (epoch !== undefined) out.epoch = epoch;
    if (vmstate !== undefined) out.vmstateBytes = vmstate;
    if (mem !== undefined) out.memBytes = mem;
    return out;
  }
  throw new TransportError(
    `mvmctl machine ${want === "paused" ? "pause" : "resume"} exited 0 but did not print "${vms[0]}: ${want} …"; ` +
      `the machine's state is unknown (fail closed): check it with mvmctl machine ls`,
    { details: { vm: vms[0], got: text.slice(0, 500) } },
  );
}

/** One checkpoint's metadata (`machine checkpoint create/ls --json`), as the engine uses it. */
export interface CheckpointRecord {
  id: string;
  class: "fs_quick";
  /** The machine it was taken of: `vm_id` when the CLI prints one (ours does), else `vm_name`. */
  vm: string;
  tag: string | null;
  parent: string | null;
  createdAt: string;
  expiresAt: string | null;
  sizeBytes: number;
  content: { name: string; sha256: string }[];
  metaDigest: string;
  epoch: number;
  skipped: { name: string; kind: string }[];
}

const SHA256_RE = /^[0-9a-f]{64}$/;

/**
 * A checkpoint's metadata (upstream-contract §5: `{id, class, vm_name, tag, parent, created_unix,
 * content: [{name, sha256}], meta_digest, audit_ref, …}`), read fail-closed: a missing id or
 * `vm_name`, a class other than `fs_quick`, a malformed digest or content entry is a TRANSPORT error.
 * Our CLI adds `vm_id`, `expires_unix`, `size_bytes`, `epoch` and `skipped`, read when present.
 *
 * @example `parseCheckpoint(JSON.parse(stdout)).id`
 */
export function parseCheckpoint(v: unknown): CheckpointRecord {
  const bad = (why: string) =>
    new TransportError(`mvmctl machine checkpoint: ${why}; refusing the checkpoint's metadata (fail closed)`, {
      details: { got: JSON.stringify(v)?.slice(0, 1000) },
    });
  if (!isObject(v)) throw bad("the metadata is not a JSON object");
  if (typeof v.id !== "string" || v.id === "") throw bad("id is missing or empty");
  if (v.class !== "fs_quick") throw bad(`class ${JSON.stringify(v.class)} is not fs_quick (the SDK's snapshots are filesystem-only)`);
  if (typeof v.vm_name !== "string" || v.vm_name === "") throw bad("vm_name is missing or empty");
  if (v.tag !== null && v.tag !== undefined && typeof v.tag !== "string") throw bad("tag is neither a string nor null");
  if (v.parent !== null && v.parent !== undefined && typeof v.parent !== "string") throw bad("parent is neither a string nor null");
  if (typeof v.created_unix !== "number" || !Number.isFinite(v.created_unix)) throw bad("created_unix is not a number");
  if (typeof v.meta_digest !== "string" || !/^sha256:[0-9a-f]{64}$/.test(v.meta_digest)) throw bad("meta_digest is not sha256:<hex>");
  if (!Array.isArray(v.content)) throw bad("content is not an array");
  const content = v.content.map((c) => {
    if (!isObject(c) || typeof c.name !== "string" || typeof c.sha256 !== "string" || !SHA256_RE.test(c.sha256.replace(/^sha256:/, ""))) {
      throw bad(`a content entry is not {name, sha256}: ${JSON.stringify(c)?.slice(0, 200)}`);
    }
    return { name: c.name, sha256: c.sha256 };
  });
  const skipped = Array.isArray(v.skipped)
    ? v.skipped.filter((s): s is { name: string; kind: string } => isObject(s) && typeof s.name === "string" && typeof s.kind === "string")
      .map((s) => ({ name: s.name, kind: s.kind }))
    : [];
  return {
    id: v.id,
    class: "fs_quick",
    vm: typeof v.vm_id === "string" && v.vm_id !== "" ? v.vm_id : v.vm_name,
    tag: typeof v.tag === "string" ? v.tag : null,
    parent: typeof v.parent === "string" ? v.parent : null,
    createdAt: new Date(v.created_unix * 1000).toISOString(),
    expiresAt: typeof v.expires_unix === "number" ? new Date(v.expires_unix * 1000).toISOString() : null,
    sizeBytes: typeof v.size_bytes === "number" ? v.size_bytes : 0,
    content,
    metaDigest: v.meta_digest,
    epoch: typeof v.epoch === "number" ? v.epoch : 0,
    skipped,
  };
}
