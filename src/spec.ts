/**
 * Normalises `Sandbox.create` arguments into one validated {@linkcode SandboxSpec}
 * that every engine receives, and resolves which engine runs it.
 *
 * @example Both call shapes give one spec
 * ```ts
 * import assert from "node:assert/strict";
 * import { normalizeCreate } from "./spec.ts";
 *
 * const { spec, engine } = normalizeCreate("python-3.12", { workloadId: "agent-tool" });
 * assert.deepEqual(normalizeCreate({ template: "python-3.12", workloadId: "agent-tool" }).spec, spec);
 * assert.equal(spec.ttlSeconds, 1800);
 * assert.equal(engine, undefined);
 * ```
 * @module
 */
import { invalid, UnsupportedError } from "./errors.ts";
import { NetworkPolicy, SecretRef } from "./policy.ts";
import { getEnv } from "./runtime/mod.ts";
import { parseTtl } from "./ttl.ts";
import type { CreateOptions, EngineName } from "./types.ts";
import { ARG_ENV_BUDGET, checkEnv, checkRange, checkStringMap, envBytes, snapshotId } from "./validate.ts";

/**
 * The resource ranges `Sandbox.create` accepts (inclusive); anything outside
 * is INVALID_INPUT naming the field and its range, before any engine runs.
 * The floors are what a shell and the SDK's own helpers (the runner that
 * enters the sandbox, the file agent) need to work; the ceilings are far above
 * any host this runs on, and below where the numbers stop meaning anything to
 * the kernel (cgroup and tmpfs sizes in bytes, `pid_max`).
 */
export const RESOURCE_LIMITS = {
  /** CPU cores: 0.01 (a 1 ms quota per 100 ms period, the kernel's smallest) to 1024. */
  cpu: { min: 0.01, max: 1024, unit: "CPU cores" },
  /** MiB of memory: 16 (a shell and the SDK's helpers run) to 1 TiB. */
  memoryMb: { min: 16, max: 1024 * 1024, integer: true, unit: "MiB" },
  /** Processes: 16 (the sandbox's init, a warm runner and a command or file operation fit) to 4,194,304 (the kernel's PID_MAX_LIMIT). */
  pidsLimit: { min: 16, max: 4194304, integer: true, unit: "processes" },
  /** MiB of `/tmp` (a tmpfs): 1 to 1 TiB. */
  tmpSizeMb: { min: 1, max: 1024 * 1024, integer: true, unit: "MiB" },
  /** MiB of root filesystem (record mode / microVM engines): 1 to 1 TiB. */
  rootfsSizeMb: { min: 1, max: 1024 * 1024, integer: true, unit: "MiB" },
} as const;

/** A validated, engine-neutral description of a sandbox to create. */
export interface SandboxSpec {
  /** Upstream template name, when one was given. */
  template?: string | undefined;
  /** Image reference, when given as `image` (default `"host"`). */
  image: string;
  workloadId: string;
  name?: string | undefined;
  env: Record<string, string>;
  secrets: Record<string, SecretRef>;
  include: string[];
  tags: Record<string, string>;
  ttlSeconds: number;
  cpu?: number | undefined;
  memoryMb?: number | undefined;
  rootfsSizeMb?: number | undefined;
  pidsLimit?: number | undefined;
  tmpSizeMb?: number | undefined;
  network: NetworkPolicy;
  /** True when the caller passed `network` explicitly. */
  networkGiven: boolean;
  /** Start from this snapshot; `reuse`: the caller sealed it a moment ago (a fork), so its files need not be hashed again. */
  snapshot?: { id: string; verify: boolean; reuse: boolean } | undefined;
  /** A fork of this sandbox (set by `fork()`, never by create options): `clone` its files directly, or restore `snapshot`. */
  fork?: { parentId: string; clone: boolean } | undefined;
}

const KNOWN_KEYS = new Set([
  "image",
  "template",
  "workloadId",
  "engine",
  "network",
  "secrets",
  "env",
  "include",
  "cpu",
  "memoryMb",
  "rootfsSizeMb",
  "pidsLimit",
  "tmpSizeMb",
  "ttl",
  "ttlSeconds",
  "tags",
  "name",
  "signal",
  "timeoutSeconds",
  "snapshot",
  "verify",
]);

/** Validates create arguments (`create()`, `create("python-3.12", opts)` or `create(opts)`). @example `normalizeCreate({ ttl: "5m" })` */
export function normalizeCreate(a?: string | CreateOptions, b?: CreateOptions): { spec: SandboxSpec; engine?: EngineName | undefined } {
  let opts: CreateOptions;
  let template: string | undefined;
  if (typeof a === "string") {
    template = a;
    opts = b ?? {};
  } else {
    if (a !== undefined && (a === null || typeof a !== "object")) throw invalid("options", "must be an object");
    opts = a ?? {};
  }
  for (const k of Object.keys(opts)) if (!KNOWN_KEYS.has(k)) throw invalid(k, "is not a known create option");
  if (opts.template !== undefined) {
    if (template !== undefined && template !== opts.template) throw invalid("template", "given twice with different values");
    template = opts.template;
  }
  if (template !== undefined && (typeof template !== "string" || template.trim() === "")) {
    throw invalid("template", 'must be a non-empty template name such as "python-3.12"');
  }
  if (opts.image !== undefined && (typeof opts.image !== "string" || opts.image.trim() === "")) {
    throw invalid("image", 'must be a non-empty image reference such as "host"');
  }
  if (template !== undefined && opts.image !== undefined) throw invalid("image", "give either a template or an image, not both");
  if (
    opts.workloadId !== undefined && (typeof opts.workloadId !== "string" || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(opts.workloadId))
  ) {
    throw invalid("workloadId", "must be 1-64 characters of letters, digits, '.', '_' or '-'");
  }
  if (opts.ttl !== undefined && opts.ttlSeconds !== undefined) throw invalid("ttlSeconds", "give either ttl or ttlSeconds, not both");
  const ttlSeconds = opts.ttlSeconds !== undefined ? parseTtl(opts.ttlSeconds, "ttlSeconds") : parseTtl(opts.ttl, "ttl");
  if (opts.network !== undefined && !(opts.network instanceof NetworkPolicy)) {
    throw invalid("network", "must be a NetworkPolicy, e.g. NetworkPolicy.denyByDefault().allowHttps(host)");
  }
  const network = opts.network ?? NetworkPolicy.denyByDefault();
  const env = checkEnv(opts.env, "env");
  const secrets: Record<string, SecretRef> = {};
  if (opts.secrets !== undefined) {
    if (opts.secrets === null || typeof opts.secrets !== "object") {
      throw invalid("secrets", "must be an object of NAME: SecretRef.from(name)");
    }
    for (const [k, v] of Object.entries(opts.secrets)) {
      checkEnv({ [k]: "" }, "secrets");
      if (!(v instanceof SecretRef)) {
        throw invalid(`secrets.${k}`, "must be a SecretRef (SecretRef.from(name)); raw secret values are refused");
      }
      if (k in env) throw invalid(`secrets.${k}`, "is also set in env");
      if (v.hosts.length === 0 && network.hosts.length === 0) {
        throw invalid(
          `secrets.${k}`,
          "is bound to no host (E_SECRET_WITHOUT_BINDING): pass SecretRef.from(name, { hosts }) or allow a host in the network policy",
        );
      }
      secrets[k] = v;
    }
  }
  const guestEnv = specEnvBytes({ env, secrets });
  if (guestEnv > ARG_ENV_BUDGET) {
    throw invalid(
      "env",
      `takes ${guestEnv.toLocaleString("en-US")} bytes (each NAME=value with its NUL and pointer, secrets' placeholders included); ` +
        `a sandbox's environment is part of every command's, and one command's argv and environment may take at most ` +
        `${ARG_ENV_BUDGET.toLocaleString("en-US")} (1 MiB), well under the kernel's ARG_MAX: pass large data as a file`,
    );
  }
  const include = opts.include ?? [];
  if (!Array.isArray(include) || include.some((p) => typeof p !== "string" || p === "")) {
    throw invalid("include", "must be an array of non-empty path strings");
  }
  if (opts.name !== undefined && (typeof opts.name !== "string" || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(opts.name))) {
    throw invalid("name", "must be 1-64 characters of letters, digits, '.', '_' or '-'");
  }
  if (opts.engine !== undefined && !["local", "mvmctl", "record"].includes(opts.engine)) {
    throw invalid("engine", `must be "local", "mvmctl" or "record", got ${JSON.stringify(opts.engine)}`);
  }
  const spec: SandboxSpec = {
    template,
    image: opts.image ?? "host",
    workloadId: opts.workloadId ?? opts.name ?? "sandbox",
    name: opts.name,
    env,
    secrets,
    include: [...include],
    tags: checkStringMap(opts.tags, "tags"),
    ttlSeconds,
    cpu: checkRange(opts.cpu, "cpu", RESOURCE_LIMITS.cpu),
    memoryMb: checkRange(opts.memoryMb, "memoryMb", RESOURCE_LIMITS.memoryMb),
    rootfsSizeMb: checkRange(opts.rootfsSizeMb, "rootfsSizeMb", RESOURCE_LIMITS.rootfsSizeMb),
    pidsLimit: checkRange(opts.pidsLimit, "pidsLimit", RESOURCE_LIMITS.pidsLimit),
    tmpSizeMb: checkRange(opts.tmpSizeMb, "tmpSizeMb", RESOURCE_LIMITS.tmpSizeMb),
    network,
    networkGiven: opts.network !== undefined,
  };
  if (opts.verify !== undefined && typeof opts.verify !== "boolean") throw invalid("verify", "must be true or false");
  if (opts.snapshot !== undefined) spec.snapshot = { id: snapshotId(opts.snapshot), verify: opts.verify !== false, reuse: false };
  else if (opts.verify !== undefined) throw invalid("verify", "applies only to a create from a snapshot");
  return { spec, engine: opts.engine };
}

/**
 * What a spec's environment (its `env` and its secrets' placeholders) takes of
 * each command's argv-and-environment budget. @example `specEnvBytes(spec)`
 */
export function specEnvBytes(spec: Pick<SandboxSpec, "env" | "secrets">): number {
  const placeholders: Record<string, string> = {};
  // a placeholder is `mvm-secret-` and 48 hex digits (an exposed value is counted when it is resolved)
  for (const k of Object.keys(spec.secrets)) placeholders[k] = "mvm-secret-".padEnd(59, "0");
  return envBytes(spec.env) + envBytes(placeholders);
}

/**
 * Which engine runs: `MVM_SDK_MODE=record` (or `MVM_SDK_OUT_PATH` with no
 * mode) always wins, so a build that compiles a script never executes it;
 * then the `engine` option; then `local`.
 *
 * @example `resolveEngine("mvmctl") // "record" when MVM_SDK_MODE=record`
 */
export function resolveEngine(requested?: EngineName): EngineName {
  const mode = getEnv("MVM_SDK_MODE");
  const out = getEnv("MVM_SDK_OUT_PATH");
  if (mode === "record") return "record";
  if (mode === "plan") {
    throw new UnsupportedError("MVM_SDK_MODE=plan is refused: plan belongs to the mvmctl CLI (mvmctl run --mode plan); use record or live");
  }
  if (mode !== undefined && mode !== "" && mode !== "live") {
    throw invalid("MVM_SDK_MODE", `must be "record" or "live", got ${JSON.stringify(mode)}`);
  }
  if ((mode === undefined || mode === "") && out) return "record";
  // live mode with a named mvmctl binary drives it, as upstream's SDKs do
  if (requested === undefined && mode === "live" && getEnv("MVM_CLI_BIN")) return "mvmctl";
  return requested ?? "local";
}
