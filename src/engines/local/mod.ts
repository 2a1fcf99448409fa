/**
 * The embedded default engine: real sandboxes with Linux namespaces through bubblewrap, on a plain
 * Linux box. Files of this folder, each with one job: `preflight.ts` (host tools, state, cgroup
 * layout), `helpers.ts` (the execute-only tools), `image.ts`, `bwrap.ts` (the pure command line),
 * `supervisor.ts` (start, teardown, stale sandboxes), `sandbox.ts` (one sandbox), `runners.ts`
 * and `job.ts` (the way in), `process.ts`, `output.ts`, `agent.ts`, `files.ts`, `logs.ts`,
 * `cgroups.ts`, `state.ts`, `bytes.ts`, `network.ts` (egress); the shell and Perl programs are in `sh/`, embedded into
 * `scripts.gen.ts` by `scripts/gen-shell.ts`.
 *
 * @example
 * ```ts
 * import { Sandbox } from "../../../mod.ts";
 * await using sb = await Sandbox.create({ engine: "local" });
 * console.log((await sb.commands.run(["id", "-u"])).stdout); // "0\n" (an unprivileged host uid)
 * ```
 * @module
 */
import { chmodSync, chownSync, mkdirSync, readdirSync } from "node:fs";
import { InvalidInputError, NotFoundError, UnsupportedError } from "../../errors.ts";
import { hostPid, pidExists } from "../../runtime/mod.ts";
import type { SandboxSpec } from "../../spec.ts";
import type { SandboxInfo } from "../../types.ts";
import type { Engine, EngineSandbox } from "../contract.ts";
import { bwrapArgv } from "./bwrap.ts";
import { resolveImage } from "./image.ts";
import { claimName, lookupName, releaseName } from "./names.ts";
import { EGRESS_ENV, egressTools, startEgress } from "./network.ts";
import { preflight, type Tools } from "./preflight.ts";
import { localCapabilities, LocalSandbox, newCgroupName } from "./sandbox.ts";
import { DEFAULT_TMP_MB, type Meta, SandboxDir } from "./state.ts";
import { ID_RE, reapStale, startSupervisor, teardown } from "./supervisor.ts";

const DEFAULT_PIDS = 1024;

function randomId(): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return "sbx-" + Array.from(bytes, (b) => alphabet[b % 36]).join("");
}

/** Every create option either has its effect here or is refused. */
function refuseUnsupported(spec: SandboxSpec, t: Tools): void {
  if (spec.network.rules.length > 0) egressTools(t);
  if (spec.rootfsSizeMb !== undefined) {
    throw new UnsupportedError(
      "rootfsSizeMb cannot be enforced by the local engine yet (a sandbox's / is a folder on the host's disk); omit it, or use the mvmctl engine",
      { details: { field: "rootfsSizeMb" } },
    );
  }
  if (spec.include.length > 0) {
    throw new UnsupportedError(
      "include (host paths copied into the image) is a build-time option of record mode and mvmctl; the local engine would ignore it, so it is refused. Copy files in with files.write or files.writeTar.",
      { details: { field: "include" } },
    );
  }
  if (!t.layout && (spec.cpu || spec.memoryMb || spec.pidsLimit)) {
    throw new UnsupportedError(
      "cpu, memoryMb and pidsLimit need writable cgroups (run as root, or with a delegated cgroup); none are available here",
    );
  }
}

/** The folder a sandbox starts with: `/root`, `/app`, owned by the sandbox's uid; state files 0600. */
function makeFolder(dir: SandboxDir, t: Tools, meta: Meta): void {
  const isRoot = t.uid === 0;
  mkdirSync(dir.path, { mode: 0o700 });
  chmodSync(dir.path, isRoot ? 0o711 : 0o700);
  const root = dir.file("root");
  mkdirSync(`${root}/root`, { recursive: true, mode: 0o700 });
  mkdirSync(`${root}/app`, { mode: 0o755 });
  chmodSync(root, 0o755);
  chmodSync(`${root}/app`, 0o755);
  if (isRoot) { for (const p of [root, `${root}/root`, `${root}/app`]) chownSync(p, meta.sandboxUid, meta.sandboxUid); }
  dir.write("meta.json", JSON.stringify(meta));
  dir.write("events.jsonl", "");
}

async function create(spec: SandboxSpec): Promise<EngineSandbox> {
  const t = await preflight();
  const image = resolveImage(spec);
  refuseUnsupported(spec, t);
  const limits = {
    cpu: spec.cpu,
    memoryMb: spec.memoryMb,
    pidsLimit: spec.pidsLimit ?? (t.layout ? DEFAULT_PIDS : undefined),
    tmpSizeMb: spec.tmpSizeMb ?? DEFAULT_TMP_MB,
  };
  await reapStale(t);
  const dir = new SandboxDir(t.root, randomId());
  const now = new Date();
  const isRoot = t.uid === 0;
  const sandboxUid = isRoot ? 2_000_000_000 + (crypto.getRandomValues(new Uint32Array(1))[0]! % 16_000_000) : t.uid;
  const networked = spec.network.rules.length > 0;
  const env: Record<string, string> = { ...(networked ? EGRESS_ENV : {}), ...spec.env };
  for (const [k, ref] of Object.entries(spec.secrets)) env[k] = ref.placeholder;
  const meta: Meta = {
    v: 1,
    id: dir.id,
    image,
    template: spec.template,
    name: spec.name,
    workloadId: spec.workloadId,
    tags: spec.tags,
    createdAt: now.toISOString(),
    expiresAt: new Date(now.getTime() + spec.ttlSeconds * 1000).toISOString(),
    ttlSeconds: spec.ttlSeconds,
    limits,
    env,
    ownerPid: hostPid(),
    sandboxUid,
  };
  const pool = Array.from({ length: 8 }, newCgroupName);
  try {
    makeFolder(dir, t, meta);
    // after the folder exists, so a create that lost the race sees this one as live
    if (spec.name !== undefined) await claimName(t.root, t.uid, spec.name, dir.id, (other) => nameHolderLive(t, other));
    dir.appendEvent("created", { image, ttlSeconds: spec.ttlSeconds, limits, tags: spec.tags });
    const { argv, args } = bwrapArgv({
      // as root, bwrap runs from its execute-only copy, so its pid 1 cannot be traced either; an
      // unprivileged bwrap must stay dumpable to write its own uid map
      bwrap: isRoot ? `${t.helpers}/bwrap` : t.bwrap,
      id: dir.id,
      rootDir: dir.file("root"),
      helpers: t.helpers,
      tmpBytes: limits.tmpSizeMb * 1024 * 1024,
      hostRoot: t.hostRoot,
      asUid: isRoot ? { setpriv: t.setpriv, uid: sandboxUid } : undefined,
    });
    dir.write("bwrap.args", args.map((a) => a + "\0").join(""));
    await startSupervisor(t, { dir, ttlSeconds: spec.ttlSeconds, limits, pool, bwrapArgv: argv });
    if (networked) await startEgress(t, dir, spec.network);
    const sb = new LocalSandbox(dir, meta, t);
    sb.adoptCgroups(pool);
    sb.warm();
    return sb;
  } catch (e) {
    await teardown(dir, t).catch(() => {});
    if (spec.name !== undefined) await releaseName(t.root, spec.name, dir.id);
    throw e;
  }
}

/** Whether the sandbox holding a name still exists (running, paused, stopped, or being created). */
function nameHolderLive(t: Tools, id: string): boolean {
  const d = new SandboxDir(t.root, id);
  return d.exists() && !d.has("destroying");
}

/** The id of the live sandbox named `name`, or null. */
async function findByName(name: string): Promise<string | null> {
  const t = await preflight();
  const id = lookupName(t.root, name);
  return id !== null && nameHolderLive(t, id) ? id : null;
}

async function connect(id: string): Promise<LocalSandbox> {
  if (!ID_RE.test(id)) {
    throw new InvalidInputError(`not a sandbox id: ${JSON.stringify(id)} (ids look like sbx- and 12 of a-z, 0-9)`, {
      details: { field: "id", id },
    });
  }
  const t = await preflight();
  const dir = new SandboxDir(t.root, id);
  const meta = dir.trusted(t.uid) ? dir.readMeta() : null;
  const sup = dir.readPids().supervisor;
  if (!meta || !sup || !pidExists(sup.pid) || dir.has("destroying")) {
    throw new NotFoundError(`no live sandbox ${id} (destroyed, expired, or never created here)`, { details: { id } });
  }
  return new LocalSandbox(dir, meta, t);
}

async function list(filter: { tags?: Record<string, string> | undefined }): Promise<SandboxInfo[]> {
  const t = await preflight();
  await reapStale(t);
  const out: SandboxInfo[] = [];
  let entries: string[] = [];
  try {
    entries = readdirSync(t.root);
  } catch {
    return out;
  }
  for (const id of entries.sort()) {
    if (!ID_RE.test(id)) continue;
    const sb = await connect(id).catch(() => null);
    if (!sb) continue;
    const info = await sb.info();
    if (filter.tags && Object.entries(filter.tags).some(([k, v]) => info.tags[k] !== v)) continue;
    out.push(info);
  }
  return out;
}

/** The local engine. @example `await localEngine.create(spec)` */
export const localEngine: Engine = { name: "local", capabilities: localCapabilities, create, connect, list, findByName };
