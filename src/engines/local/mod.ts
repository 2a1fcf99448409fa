/**
 * The embedded default engine: real sandboxes with Linux namespaces through bubblewrap, on a plain
 * Linux box. Files of this folder, each with one job: `preflight.ts` (host tools, state, cgroup
 * layout), `helpers.ts` (the execute-only tools), `image.ts`, `bwrap.ts` (the pure command line),
 * `supervisor.ts` (start, teardown, stale sandboxes), `sandbox.ts` (one sandbox), `runners.ts`
 * and `job.ts` (the way in), `process.ts`, `output.ts`, `agent.ts`, `files.ts`, `logs.ts`,
 * `cgroups.ts`, `state.ts` (file names as bytes: `src/filenames.ts`); the shell and Perl programs are in `sh/`, embedded into
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
import { chmodSync, chownSync, mkdirSync, readdirSync, rmdirSync, writeFileSync } from "node:fs";
import { InvalidInputError, NotFoundError, UnsupportedError } from "../../errors.ts";
import { type ResolvedSecret, resolveSecrets } from "../../secrets.ts";
import { getEnv, hostPid } from "../../runtime/mod.ts";
import type { SandboxSpec } from "../../spec.ts";
import type { SandboxInfo } from "../../types.ts";
import type { ForkInfo } from "../../snapshot.ts";
import type { Engine, EngineSandbox } from "../contract.ts";
import { bwrapArgv } from "./bwrap.ts";
import { resolveImage } from "./image.ts";
import { claimName, lookupName, releaseName } from "./names.ts";
import { CA_ENV, EGRESS_ENV, egressTools, makeCa, startEgress, substituted } from "./network.ts";
import { preflight, type Tools, which } from "./preflight.ts";
import { cowStorage, overlaySafe, type Restorable, restoreInfo, runShell, snapshotStore } from "./snapshot.ts";
import { OVERLAY_SH } from "./scripts.gen.ts";
import { chooseFreezer, type FreezerKind, setLimits } from "./cgroups.ts";
import { localCapabilities, LocalSandbox, newCgroupName } from "./sandbox.ts";
import { auditLog, DEFAULT_TMP_MB, type Meta, SandboxDir } from "./state.ts";
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

/**
 * The folder a sandbox starts with: `/root`, `/app`, owned by the sandbox's uid; state files 0600. A
 * sandbox restored on an overlay gets an empty mount point and the layer's `upper`/`work` folders
 * instead (its launcher mounts the snapshot's tree there); one restored by copy gets the tree copied
 * in and given to its uid. A fork by clone gets its parent's root cloned in (while the parent is
 * frozen), then made its own; every fork is recorded on its parent's side (`sandbox.forked`).
 */
async function makeFolder(dir: SandboxDir, t: Tools, meta: Meta, restore?: Restore, fork?: Fork): Promise<void> {
  const isRoot = t.uid === 0;
  mkdirSync(dir.path, { mode: 0o700 });
  chmodSync(dir.path, isRoot ? 0o711 : 0o700);
  const root = dir.file("root");
  if (fork?.parent) mkdirSync(root, { mode: 0o700 });
  if (fork) meta.forkedFrom = await forkRoot(t, dir.id, root, meta.sandboxUid, fork, restore);
  if (fork?.parent) {
    dir.write("meta.json", JSON.stringify(meta));
    dir.write("events.jsonl", "");
    return;
  }
  if (restore?.mode === "overlay") {
    for (const [p, mode] of [[root, 0o755], [`${dir.path}/upper`, 0o755], [`${dir.path}/work`, 0o700]] as const) {
      mkdirSync(p, { mode });
      chmodSync(p, mode);
    }
    snapshotStore(t).addUser(restore.from.info.id, dir.id);
    dir.write("meta.json", JSON.stringify(meta));
    dir.write("events.jsonl", "");
    return;
  }
  mkdirSync(`${root}/root`, { recursive: true, mode: 0o700 });
  mkdirSync(`${root}/app`, { mode: 0o755 });
  chmodSync(root, 0o755);
  chmodSync(`${root}/app`, 0o755);
  if (isRoot) { for (const p of [root, `${root}/root`, `${root}/app`]) chownSync(p, meta.sandboxUid, meta.sandboxUid); }
  if (restore) await runShell(["restore", restore.from.tree, root, String(meta.sandboxUid)], `copy snapshot ${restore.from.info.id} in`);
  dir.write("meta.json", JSON.stringify(meta));
  dir.write("events.jsonl", "");
}

/**
 * A fork's files and record: the parent's root cloned into `root` (while the parent is frozen) and
 * given to `uid`, when the fork clones; then the `sandbox.forked` entry on the parent's side.
 */
async function forkRoot(t: Tools, id: string, root: string, uid: number, fork: Fork, restore?: Restore): Promise<ForkInfo> {
  const skipped = fork.parent ? await fork.parent.cloneInto(root, uid) : restore?.from.info.skipped ?? [];
  const method = fork.parent ? "clone" : "snapshot";
  const snapshotId = restore?.from.info.id ?? null;
  const auditId = new SandboxDir(t.root, fork.parentId).audit("sandbox.forked", {
    child: id,
    method,
    snapshot: snapshotId,
    skipped: skipped.length,
  });
  return { parentId: fork.parentId, method, snapshotId, skipped, auditId };
}

/**
 * Makes a warm spare a fork of `fork.parent` before it is handed out: the spare never ran anything, so
 * its `/root` and `/app` are empty and go (the parent's take their place); every other entry of its
 * root is a mount point, as in the parent's, whose attributes the clone copies. Throws when the spare's
 * folders are not empty (then the spare is dropped and the fork starts a sandbox of its own).
 */
async function forkSpare(t: Tools, sb: LocalSandbox, fork: Fork): Promise<void> {
  const root = sb.dir.file("root");
  rmdirSync(`${root}/root`);
  rmdirSync(`${root}/app`);
  sb.meta = { ...sb.meta, forkedFrom: await forkRoot(t, sb.id, root, sb.meta.sandboxUid, fork) };
}

/** A fork: its parent's id, and the parent itself when its root is cloned (else the fork restores a snapshot). */
interface Fork {
  parentId: string;
  parent?: LocalSandbox | undefined;
}

/** A restore: the checked snapshot and how its tree becomes the sandbox's `/`. */
interface Restore {
  from: Restorable;
  mode: "overlay" | "copy";
}

/** What a sandbox is started with; the rest of its spec is applied when it is handed out. */
interface Launch {
  /** Start from a snapshot. */
  restore?: Restore | undefined;
  /** A fork (by clone, or of the snapshot in `restore`). */
  fork?: Fork | undefined;
  image: string;
  tmpMb: number;
  ttlSeconds: number;
  limits: Meta["limits"];
  /** A sandbox for the warm pool: invisible to list() and connect() until a create claims it. */
  pooled: boolean;
  freezer: FreezerKind | null;
  /** Egress to start once the sandbox is up (never for a pooled one). */
  network?: SandboxSpec["network"] | undefined;
  /** Secrets its egress proxy substitutes (then it gets a CA of its own). */
  secrets?: ResolvedSecret[] | undefined;
  meta: Omit<Meta, "v" | "id" | "image" | "createdAt" | "expiresAt" | "ttlSeconds" | "limits" | "ownerPid" | "sandboxUid">;
}

async function launch(t: Tools, l: Launch): Promise<LocalSandbox> {
  const dir = new SandboxDir(t.root, randomId());
  const now = new Date();
  const isRoot = t.uid === 0;
  const sandboxUid = isRoot ? 2_000_000_000 + (crypto.getRandomValues(new Uint32Array(1))[0]! % 16_000_000) : t.uid;
  const meta: Meta = {
    v: 1,
    id: dir.id,
    image: l.image,
    ...l.meta,
    createdAt: now.toISOString(),
    expiresAt: new Date(now.getTime() + l.ttlSeconds * 1000).toISOString(),
    ttlSeconds: l.ttlSeconds,
    limits: l.limits,
    ownerPid: hostPid(),
    sandboxUid,
    ...(l.restore ? { restoredFrom: restoreInfo(l.restore.from, l.restore.mode) } : {}),
  };
  const pool = Array.from({ length: 8 }, newCgroupName);
  try {
    // the sandbox's own CA, made before it starts: its bundle is bound into the sandbox's /etc view
    const ca = l.secrets?.length ? await makeCa(dir.id, t.perl) : undefined;
    const { argv, args } = bwrapArgv({
      // as root, bwrap runs from its execute-only copy, so its pid 1 cannot be traced either; an
      // unprivileged bwrap must stay dumpable to write its own uid map
      bwrap: isRoot ? `${t.helpers}/bwrap` : t.bwrap,
      id: dir.id,
      rootDir: dir.file("root"),
      helpers: t.helpers,
      tmpBytes: l.tmpMb * 1024 * 1024,
      hostRoot: t.hostRoot,
      caBundle: ca ? dir.file("ca-bundle.crt") : undefined,
      asUid: isRoot ? { setpriv: t.setpriv, uid: sandboxUid } : undefined,
    });
    // an overlay restore mounts the snapshot's tree in a mount namespace of the launcher's own, which
    // no other process sees and which ends with the sandbox's last process: nothing to unmount, ever
    const overlay = l.restore?.mode === "overlay"
      ? [
        which("unshare") ?? "/usr/bin/unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        OVERLAY_SH,
        "mvm-overlay",
        l.restore.from.tree,
        `${dir.path}/upper`,
        `${dir.path}/work`,
        dir.file("root"),
        String(sandboxUid),
        `${dir.path}/owned`,
      ]
      : [];
    await startSupervisor(t, {
      dir,
      ttlSeconds: l.ttlSeconds,
      limits: l.limits,
      pool,
      freezer: l.freezer,
      bwrapArgv: [...overlay, ...argv],
    }, async () => {
      await makeFolder(dir, t, meta, l.restore, l.fork);
      if (l.pooled) dir.mark("pooled");
      else {
        dir.appendEvent("created", {
          image: l.image,
          ttlSeconds: l.ttlSeconds,
          limits: l.limits,
          tags: meta.tags,
          ...(meta.restoredFrom
            ? { snapshot: meta.restoredFrom.snapshotId, verified: meta.restoredFrom.verified, restore: meta.restoredFrom.restore }
            : {}),
          ...(meta.forkedFrom ? { forkedFrom: meta.forkedFrom.parentId, method: meta.forkedFrom.method } : {}),
        });
      }
      dir.write("bwrap.args", args.map((a) => a + "\0").join(""));
      if (ca) {
        // the key stays on the host, in the state folder the guest cannot reach; the bundle is public
        writeFileSync(dir.file("ca.key"), ca.key, { mode: 0o600 });
        writeFileSync(dir.file("ca.crt"), ca.cert, { mode: 0o600 });
        writeFileSync(dir.file("ca-bundle.crt"), ca.bundle, { mode: 0o644 });
        chmodSync(dir.file("ca-bundle.crt"), 0o644);
      }
    });
    if (l.network) await startEgress(t, dir, l.network, l.secrets);
    const sb = new LocalSandbox(dir, meta, t);
    sb.adoptCgroups(pool);
    sb.warm();
    return sb;
  } catch (e) {
    await teardown(dir, t).catch(() => {});
    throw e;
  }
}

/**
 * The warm pool: once this process has created a sandbox, one more is started in the background, so
 * the next create only has to claim it (its meta, limits and lease are set then). A pooled sandbox is
 * invisible to list() and connect(), never ran anything, and is owned by this process like any other
 * (its supervisor ends it when this process dies). `MVM_WARM_POOL=0` turns it off.
 */
let spare: { image: string; tmpMb: number; freezer: FreezerKind | null; sb: Promise<LocalSandbox | null> } | null = null;

function poolEnabled(): boolean {
  return getEnv("MVM_WARM_POOL") !== "0";
}

function refill(t: Tools, image: string, tmpMb: number, freezer: FreezerKind | null): void {
  if (!poolEnabled() || spare) return;
  const ttlSeconds = 86_400;
  const limits = { pidsLimit: t.layout ? DEFAULT_PIDS : undefined, tmpSizeMb: tmpMb };
  spare = {
    image,
    tmpMb,
    freezer,
    sb: launch(t, { image, tmpMb, ttlSeconds, limits, pooled: true, freezer, meta: { workloadId: "", tags: {}, env: {} } })
      .catch(() => null),
  };
}

/** The limits a create asks for, with the engine's default pids limit where cgroups exist. */
function limitsOf(spec: SandboxSpec, t: Tools, tmpMb: number): Meta["limits"] {
  return { cpu: spec.cpu, memoryMb: spec.memoryMb, pidsLimit: spec.pidsLimit ?? (t.layout ? DEFAULT_PIDS : undefined), tmpSizeMb: tmpMb };
}

async function claim(
  t: Tools,
  spec: SandboxSpec,
  image: string,
  tmpMb: number,
  freezer: FreezerKind | null,
  env: Record<string, string>,
  prepare?: (sb: LocalSandbox) => Promise<void>,
): Promise<LocalSandbox | null> {
  if (!spare || spare.image !== image || spare.tmpMb !== tmpMb || spare.freezer !== freezer) return null;
  const taken = spare.sb;
  spare = null;
  const sb = await taken;
  if (!sb) return null;
  const limits = limitsOf(spec, t, tmpMb);
  try {
    if (sb.deathError("hand out") !== null) throw new Error("the pooled sandbox died");
    await prepare?.(sb);
    if (t.layout && (limits.cpu || limits.memoryMb || limits.pidsLimit !== sb.meta.limits.pidsLimit)) {
      await setLimits(t.layout, t.tag, sb.id, limits);
    }
    const now = new Date();
    const meta: Meta = {
      ...sb.meta,
      template: spec.template,
      name: spec.name,
      workloadId: spec.workloadId,
      tags: spec.tags,
      env,
      limits,
      createdAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + spec.ttlSeconds * 1000).toISOString(),
      ttlSeconds: spec.ttlSeconds,
    };
    const dir = sb.dir;
    dir.replace("meta.json", JSON.stringify(meta));
    dir.replace("ttl", String(spec.ttlSeconds));
    if (!dir.poke()) throw new Error("the pooled sandbox's supervisor is gone");
    sb.meta = meta;
    dir.appendEvent("created", {
      image,
      ttlSeconds: spec.ttlSeconds,
      limits,
      tags: spec.tags,
      warm: true,
      ...(meta.forkedFrom ? { forkedFrom: meta.forkedFrom.parentId, method: meta.forkedFrom.method } : {}),
    });
    dir.unmark("pooled");
    return sb;
  } catch {
    sb.destroy().catch(() => {});
    return null;
  }
}

async function create(spec: SandboxSpec): Promise<EngineSandbox> {
  const t = await preflight();
  const image = resolveImage(spec);
  refuseUnsupported(spec, t);
  await reapStale(t, true);
  const tmpMb = spec.tmpSizeMb ?? DEFAULT_TMP_MB;
  const freezer = chooseFreezer(t.layout);
  // a networked sandbox gets its egress when it starts, so it never comes from the pool
  const networked = spec.network.rules.length > 0;
  // every value is read before any process of the sandbox starts; the guest gets placeholders
  const secrets = await resolveSecrets(spec.secrets, spec.network.hosts);
  for (const [k, v] of Object.entries(spec.env)) {
    const s = secrets.find((s) => v.includes(s.value));
    if (s) {
      throw new InvalidInputError(
        `env.${k} holds the value of secret ${
          JSON.stringify(s.name)
        }: pass it only as a secret (exposeToGuest: true if the guest must hold it)`,
        { details: { field: `env.${k}`, secret: s.name } },
      );
    }
  }
  const sub = networked ? substituted(secrets) : [];
  const env: Record<string, string> = { ...(networked ? EGRESS_ENV : {}), ...(sub.length > 0 ? CA_ENV : {}), ...spec.env };
  const exposed: Record<string, string> = {};
  for (const s of secrets) {
    if (s.exposeToGuest) exposed[s.key] = s.value;
    else env[s.key] = s.placeholder;
  }
  // a restore starts its own sandbox (its root is the snapshot's), checked before anything is made
  let restore: Restore | undefined;
  if (spec.snapshot) {
    const from = await snapshotStore(t).open(spec.snapshot.id, { verify: spec.snapshot.verify, reuse: spec.snapshot.reuse });
    // on copy-on-write storage a copy is a reflink (O(files)) and leaves a plain folder a later fork can clone
    const overlay = t.uid === 0 && overlaySafe(from.tree) && overlaySafe(t.root) && !(await cowStorage(t.root));
    restore = { from, mode: overlay ? "overlay" : "copy" };
  }
  // a fork by clone takes its parent's files while the parent is frozen (makeFolder)
  const fork: Fork | undefined = spec.fork
    ? { parentId: spec.fork.parentId, parent: spec.fork.clone ? await connect(spec.fork.parentId) : undefined }
    : undefined;
  // a fork by clone can take a warm spare: its files are cloned in before it is handed out
  let sb = networked || restore ? null : await claim(t, spec, image, tmpMb, freezer, env, fork && ((s) => forkSpare(t, s, fork)));
  if (!sb) {
    const limits = limitsOf(spec, t, tmpMb);
    sb = await launch(t, {
      image,
      tmpMb,
      ttlSeconds: spec.ttlSeconds,
      limits,
      pooled: false,
      restore,
      fork,
      freezer,
      network: networked ? spec.network : undefined,
      secrets: sub,
      meta: { template: spec.template, name: spec.name, workloadId: spec.workloadId, tags: spec.tags, env },
    });
  }
  await fork?.parent?.disconnect();
  if (Object.keys(exposed).length > 0) sb.dir.writeExposed(exposed);
  // the next spare starts once this sandbox's first runner is in place: on a small machine, starting
  // both at once would make the caller's first command wait for the spare's start too. A macrotask
  // later, so a create (or fork) that took a warm spare returns before that start's spawns
  sb.warmed().then(() => setTimeout(() => refill(t, image, tmpMb, freezer), 0));
  if (spec.name !== undefined) {
    // after the folder exists, so a create that lost the race sees this one as live
    try {
      await claimName(t.root, t.uid, spec.name, sb.id, (other) => nameHolderLive(t, other));
    } catch (e) {
      await sb.destroy().catch(() => {});
      await releaseName(t.root, spec.name, sb.id);
      throw e;
    }
  }
  return sb;
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
  if (!meta || !dir.readPids().supervisor || !dir.supervised() || dir.has("destroying") || dir.has("pooled")) {
    throw new NotFoundError(`no live sandbox ${id} (destroyed, expired, or never created here)`, { details: { id } });
  }
  return new LocalSandbox(dir, meta, t);
}

async function list(filter: { tags?: Record<string, string> | undefined }): Promise<SandboxInfo[]> {
  const t = await preflight();
  await reapStale(t);
  // ends that no client saw (TTL expiries, owners' deaths) reach the chain even when nothing is listed
  auditLog(t.root).ingest();
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
export const localEngine: Engine = {
  name: "local",
  capabilities: localCapabilities,
  create,
  connect,
  list,
  findByName,
  snapshots: {
    list: async () => snapshotStore(await preflight()).list(),
    get: async (id) => snapshotStore(await preflight()).get(id),
    delete: async (id) => snapshotStore(await preflight()).delete(id),
  },
};
