/**
 * Sealed filesystem snapshots: what `sb.snapshot()` returns, and the {@linkcode Snapshot} helpers that
 * list, read and delete them. A snapshot is the sandbox's writable `/` captured while it was frozen,
 * with a content list (a SHA-256 per file, one root digest over the list) sealed with HMAC-SHA256 under
 * a host key; every restore checks the seal, its epoch and the digests.
 *
 * @example Snapshot, fork, clean up
 * ```ts
 * import assert from "node:assert/strict";
 * import { Sandbox, Snapshot } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * await sb.files.write("/app/state.txt", "v1");
 * const snap = await sb.snapshot({ name: "v1", retention: "1h" });
 * const child = await Sandbox.create({ snapshot: snap.id });
 * assert.equal(await child.files.readText("/app/state.txt"), "v1");
 * assert.equal(child.restoredFrom?.verified, true);
 * await child.destroy();
 * await Snapshot.delete(snap.id);
 * ```
 * @module
 */
import { UnsupportedError } from "./errors.ts";
import { snapshotId } from "./validate.ts";
import { getEngine } from "./engines/mod.ts";
import { withHostPermissions } from "./runtime/mod.ts";
import { resolveEngine } from "./spec.ts";
import type { EngineName } from "./types.ts";

/** `fs_quick`: the filesystem only; `vm_full`: memory too (needs a checkpoint tool, see {@linkcode SnapshotOptions}). */
export type SnapshotClass = "fs_quick" | "vm_full";

/**
 * A sealed snapshot, as `sb.snapshot()`, {@linkcode Snapshot.get} and {@linkcode Snapshot.list} return it.
 *
 * @example Reading a snapshot's record
 * ```ts
 * import assert from "node:assert/strict";
 * import { Sandbox, Snapshot, type SnapshotInfo } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * const s: SnapshotInfo = await sb.snapshot({ retention: 60 });
 * assert.equal(s.class, "fs_quick");
 * assert.equal(s.sealed, true);
 * assert.match(s.digests.root, /^sha256:[0-9a-f]{64}$/);
 * await Snapshot.delete(s.id);
 * ```
 */
export interface SnapshotInfo {
  /** `snap-` and 12 of `[a-z0-9]`. */
  id: string;
  /** The name given, if any. */
  name?: string | undefined;
  /** The sandbox it was taken of. */
  sandboxId: string;
  /** Always `fs_quick`: the filesystem (`vm_full` is refused by engines without a memory checkpoint). */
  class: "fs_quick";
  /** When it was taken (ISO 8601). */
  createdAt: string;
  /** When it is removed (ISO 8601), or null when kept `"forever"`. */
  expiresAt: string | null;
  /** Bytes of file data captured. */
  sizeBytes: number;
  /** `root`: `sha256:<hex>` over the content list; `content`: one `{ name, sha256 }` per regular file and symlink. */
  digests: { root: string; content: { name: string; sha256: string }[] };
  /** The snapshot the sandbox was itself restored from, or null. */
  parent: string | null;
  /** Sealed with HMAC-SHA256 under the host key (always true). */
  sealed: true;
  /** The seal's epoch (per state root, counts up; a snapshot whose epoch the host retired is refused). */
  epoch: number;
  /** Entries that were not captured (fifos, sockets, devices), with their kind. */
  skipped: { name: string; kind: string }[];
  /** The audit entry that recorded it. */
  auditId: string;
}

/**
 * What `sb.snapshot()` takes.
 *
 * @example `await sb.snapshot({ name: "after-setup", retention: "1d" })`
 */
export interface SnapshotOptions {
  /** A label (1-64 of letters, digits, `.`, `_`, `-`). */
  name?: string;
  /** How long it is kept: seconds or `"30m"`/`"7d"` (1 s to 30 days), or `"forever"`. Default 7 days. */
  retention?: number | string;
  /** `fs_quick` (default). `vm_full` needs a memory checkpoint tool: engines without one throw `UnsupportedError`. */
  class?: SnapshotClass;
}

/**
 * How a sandbox made from a snapshot was restored (`sb.restoredFrom`, `info().restoredFrom`).
 *
 * @example `if (!child.restoredFrom?.verified) console.warn("unverified restore")`
 */
export interface RestoreInfo {
  /** The snapshot it started from. */
  snapshotId: string;
  /** True when the seal, epoch and digests were checked and matched; false only with `verify: false`. */
  verified: boolean;
  /** `overlay`: the snapshot is the read-only lower layer (no copy); `copy`: its files were copied. */
  restore: "overlay" | "copy";
  /** Whether every file was hashed again (a fork from the snapshot it just took reuses the digests it computed). */
  rehashed: boolean;
  /** The audit entry (`snapshot.verified` or `snapshot.unverified`). */
  auditId: string;
}

/**
 * How a fork was made (`sb.forkedFrom`, `info().forkedFrom`). Where the state root is on a
 * copy-on-write filesystem (XFS with reflink, btrfs), `fork()` clones the frozen parent's `/` by
 * reflink into the fork's own folder: O(files), flat in size, and **nothing is stored or sealed**, so
 * there is nothing to verify (`method: "clone"`, `snapshotId: null`, no `restoredFrom`). Elsewhere it
 * takes a sealed snapshot and restores it (`method: "snapshot"`; `restoredFrom` says how it was checked).
 *
 * @example Telling the two apart
 * ```ts
 * import { Sandbox, Snapshot } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * await using child = await sb.fork();
 * const f = child.forkedFrom!;
 * console.log(f.parentId === sb.id, f.method); // true "clone" on XFS/btrfs, true "snapshot" on ext4
 * if (f.snapshotId) await child.destroy().then(() => Snapshot.delete(f.snapshotId!));
 * ```
 */
export interface ForkInfo {
  /** The sandbox it was forked from. */
  parentId: string;
  /** `clone`: the parent's files were cloned by reflink while it was frozen (nothing stored); `snapshot`: a sealed snapshot was taken and restored. */
  method: "clone" | "snapshot";
  /** The snapshot taken for the fork (`method: "snapshot"`), else null. */
  snapshotId: string | null;
  /** Entries of the parent's `/` the fork did not get (fifos, sockets, devices), with their kind. */
  skipped: { name: string; kind: string }[];
  /** The audit entry that recorded the fork on the parent's side (`sandbox.forked`, naming the child). */
  auditId: string;
}

/** The default retention of a snapshot: 7 days. */
export const DEFAULT_SNAPSHOT_RETENTION_SECONDS = 7 * 86_400;

/**
 * The snapshots of an engine's state root (the local engine's: `$MVM_STATE_DIR/snapshots`). Expired
 * snapshots are removed by the next `list()` or `sb.snapshot()` (each removal is an audit entry).
 *
 * @example List, read, delete
 * ```ts
 * import assert from "node:assert/strict";
 * import { NotFoundError, Sandbox, Snapshot } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * const s = await sb.snapshot({ name: "example" });
 * assert.ok((await Snapshot.list()).some((x) => x.id === s.id));
 * assert.equal((await Snapshot.get(s.id)).name, "example");
 * await Snapshot.delete(s.id);
 * await assert.rejects(Snapshot.get(s.id), NotFoundError);
 * ```
 */
export class Snapshot {
  private constructor() {}

  /** Every snapshot that has not expired, oldest first. @example `await Snapshot.list()` */
  static async list(options: { engine?: EngineName } = {}): Promise<SnapshotInfo[]> {
    const s = await store(options.engine);
    return await withHostPermissions(() => s.list());
  }

  /** One snapshot's record (its seal is checked; the files are hashed only by a restore). @example `await Snapshot.get(id)` */
  static async get(id: string, options: { engine?: EngineName } = {}): Promise<SnapshotInfo> {
    const checked = snapshotId(id, "id");
    const s = await store(options.engine);
    return await withHostPermissions(() => s.get(checked));
  }

  /** Removes a snapshot; returns the audit id. One a live sandbox still runs on is `ConflictError`. @example `await Snapshot.delete(id)` */
  static async delete(id: string, options: { engine?: EngineName } = {}): Promise<string> {
    const checked = snapshotId(id, "id");
    const s = await store(options.engine);
    return await withHostPermissions(() => s.delete(checked));
  }
}

async function store(engine: EngineName | undefined) {
  const name = resolveEngine(engine);
  const e = await getEngine(name);
  if (!e.snapshots) throw new UnsupportedError(`the ${name} engine keeps no snapshots`);
  return e.snapshots;
}
