/**
 * The local engine's snapshots: `<state>/snapshots/<id>/` (0700, owned by the engine's uid) holds
 * `tree/` (the sandbox's writable `/`, owners and modes as they were), `manifest.json` (every entry:
 * name, kind, mode, size, SHA-256 of a file's bytes or a symlink's target), `meta.json` (the
 * {@linkcode SnapshotInfo}) and `integrity.json`, the seal: HMAC-SHA256 under a 32-byte host key
 * (`snapshots/key`, 0600, made on first use) over the snapshot's id, epoch and the digests of
 * `meta.json` and the manifest. Epochs count up per state root (`snapshots/epoch` is the high-water
 * mark); `snapshots/ledger/<id>` holds each live snapshot's epoch, so a deleted or expired snapshot
 * put back in place, or one sealed with another epoch, is refused.
 *
 * Capture copies the frozen root with `cp -d` (symlinks stay symlinks, nothing is followed, files are
 * opened with O_NOFOLLOW); fifos, sockets and devices are dropped and listed in `skipped`. The digests
 * are computed from the copy, which the guest cannot reach.
 *
 * Forks on copy-on-write storage (XFS with reflink, btrfs: {@linkcode cowStorage}) store nothing: the
 * frozen parent's root is cloned by reflink into the fork's folder ({@linkcode cloneTree}) and made the
 * fork's own ({@linkcode adoptTree}).
 *
 * @example
 * ```ts
 * import { snapshotsDir } from "./snapshot.ts";
 * console.log(snapshotsDir("/var/lib/mvm/sandboxes")); // "/var/lib/mvm/snapshots"
 * ```
 * @module
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import {
  chmodSync,
  constants,
  existsSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { open } from "node:fs/promises";
import { Buffer } from "node:buffer";
import { ConflictError, IntegrityError, NotFoundError, PermissionDeniedError, TransportError } from "../../errors.ts";
import { runtime } from "../../runtime/mod.ts";
import type { RestoreInfo, SnapshotInfo } from "../../snapshot.ts";
import { SNAPSHOT_ID_RE } from "../../validate.ts";
import { collectText } from "../../streams.ts";
import { decodeName } from "../../filenames.ts";
import { SNAPSHOT_SH } from "./scripts.gen.ts";
import { auditLog, SandboxDir, trustedDir } from "./state.ts";
import { ID_RE } from "./supervisor.ts";
import { withLock } from "../../lock.ts";

/** The snapshots folder of a state root. @example `snapshotsDir("/var/lib/mvm/sandboxes") // "/var/lib/mvm/snapshots"` */
export function snapshotsDir(root: string): string {
  return `${root.replace(/\/sandboxes$/, "")}/snapshots`;
}

/** One entry of a snapshot's manifest: `[name, kind, mode, size, sha256]` (sha256 of a symlink's target; "" for a folder). */
export type ManifestEntry = [string, "file" | "dir" | "symlink", number, number, string];

const sha256hex = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");

/** What the seal covers and says (`integrity.json`), close to upstream's sidecar. */
interface Integrity {
  schema_version: 2;
  algorithm: "HMAC-SHA256";
  snapshot_id: string;
  epoch: number;
  meta_digest: string;
  content_digest: string;
  tag_hex: string;
}

/** Kinds of entries a capture drops, by `lstat`. */
function kindOf(st: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean; isFIFO(): boolean; isSocket(): boolean }) {
  if (st.isFile()) return "file";
  if (st.isDirectory()) return "dir";
  if (st.isSymbolicLink()) return "symlink";
  if (st.isFIFO()) return "fifo";
  if (st.isSocket()) return "socket";
  return "device";
}

/**
 * Walks a tree without following anything (lstat; files opened with O_NOFOLLOW) and returns its
 * manifest, names sorted by bytes. With `drop`, entries other than files, folders and symlinks are
 * removed and reported; without it they make the tree not match.
 *
 * @example `const { manifest } = await hashTree("/var/lib/mvm/snapshots/snap-…/tree", false)`
 */
export async function hashTree(
  top: string,
  drop: boolean,
): Promise<{ manifest: ManifestEntry[]; skipped: { name: string; kind: string }[]; bytes: number }> {
  const manifest: ManifestEntry[] = [];
  const skipped: { name: string; kind: string }[] = [];
  let bytes = 0;
  const buf = new Uint8Array(1 << 20);
  const walk = async (rel: Buffer[]) => {
    const dirPath = Buffer.concat([Buffer.from(top), ...rel.flatMap((r) => [Buffer.from("/"), r])]);
    const names = (readdirSync(dirPath, { encoding: "buffer" }) as Buffer[]).sort(Buffer.compare);
    for (const n of names) {
      const path = Buffer.concat([dirPath, Buffer.from("/"), n]);
      const name = decodeName(Buffer.concat(rel.concat([n]).flatMap((r, i) => (i ? [Buffer.from("/"), r] : [r]))));
      const st = lstatSync(path);
      const kind = kindOf(st);
      const mode = st.mode & 0o7777;
      if (kind === "dir") {
        manifest.push([name, "dir", mode, 0, ""]);
        await walk([...rel, n]);
      } else if (kind === "symlink") {
        const target = readlinkSync(path, { encoding: "buffer" }) as Buffer;
        manifest.push([name, "symlink", mode, target.length, sha256hex(target)]);
      } else if (kind === "file") {
        const h = createHash("sha256");
        const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
        let size = 0;
        try {
          for (;;) {
            const { bytesRead } = await fh.read(buf, 0, buf.length, null);
            if (bytesRead === 0) break;
            h.update(buf.subarray(0, bytesRead));
            size += bytesRead;
          }
        } finally {
          await fh.close();
        }
        bytes += size;
        manifest.push([name, "file", mode, size, h.digest("hex")]);
      } else {
        skipped.push({ name, kind });
        if (drop) rmSync(path, { force: true });
      }
    }
  };
  await walk([]);
  return { manifest, skipped, bytes };
}

/** Where a restore starts from: the snapshot's record and its read-only tree. */
export interface Restorable {
  info: SnapshotInfo;
  tree: string;
  verified: boolean;
  rehashed: boolean;
  auditId: string;
}

/** Digests this process sealed itself, by snapshot id: a fork from them need not hash the files again. */
const SEALED_HERE = new Map<string, string>();

/**
 * The snapshots of one state root. @example `new SnapshotStore("/var/lib/mvm/sandboxes", 0).list()`
 */
export class SnapshotStore {
  readonly dir: string;
  #key: Uint8Array | undefined;
  constructor(readonly root: string, readonly uid: number) {
    this.dir = snapshotsDir(root);
  }

  #ensure(): void {
    trustedDir(this.dir, this.uid, 0o700);
    trustedDir(`${this.dir}/ledger`, this.uid, 0o700);
  }

  /** The host key (32 random bytes, 0600), made on first use; a key others could read or replace is refused. */
  #hostKey(): Uint8Array {
    if (this.#key) return this.#key;
    const path = `${this.dir}/key`;
    try {
      writeFileSync(path, crypto.getRandomValues(new Uint8Array(32)), { mode: 0o600, flag: "wx" });
    } catch (e) {
      if ((e as { code?: string }).code !== "EEXIST") throw e;
    }
    const st = lstatSync(path);
    if (!st.isFile() || (st.mode & 0o077) !== 0 || st.uid !== this.uid || st.size !== 32) {
      throw new PermissionDeniedError(
        `refusing the snapshot key ${path}: it must be a 32-byte file of uid ${this.uid} that nobody else can read or write (mode 0600)`,
        { details: { path } },
      );
    }
    return this.#key = new Uint8Array(readFileSync(path));
  }

  #tag(i: Omit<Integrity, "tag_hex">): string {
    const body = JSON.stringify([i.schema_version, i.algorithm, i.snapshot_id, i.epoch, i.meta_digest, i.content_digest]);
    return createHmac("sha256", this.#hostKey()).update("mvm-snapshot-v2\0").update(body).digest("hex");
  }

  /** Runs `fn` under the store's lock (src/lock.ts: flock, and a lock folder that Node processes meet). */
  #locked<T>(fn: () => T): T {
    return withLock(this.dir, fn);
  }

  /** A fresh epoch (the high-water mark plus one), recorded for `id` in the ledger. */
  #nextEpoch(id: string): number {
    return this.#locked(() => {
      let hwm = 0;
      try {
        hwm = Number(readFileSync(`${this.dir}/epoch`, "utf8").trim()) || 0;
      } catch { /* first */ }
      const epoch = hwm + 1;
      const tmp = `${this.dir}/epoch.${crypto.randomUUID().slice(0, 8)}`;
      writeFileSync(tmp, String(epoch), { mode: 0o600 });
      renameSync(tmp, `${this.dir}/epoch`);
      writeFileSync(`${this.dir}/ledger/${id}`, String(epoch), { mode: 0o600 });
      return epoch;
    });
  }

  /** A fresh snapshot id and its staging folder (renamed into place once sealed). */
  stage(): { id: string; tmp: string } {
    this.#ensure();
    const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
    const id = "snap-" + Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => alphabet[b % 36]).join("");
    const tmp = `${this.dir}/.tmp-${id}`;
    mkdirSync(tmp, { mode: 0o700 });
    return { id, tmp };
  }

  /** Copies a sandbox's root into the staging folder (`init`: enter its launcher's mount namespace first). */
  async copyIn(src: string, tmp: string, init?: number): Promise<void> {
    await runShell(["capture", src, `${tmp}/tree`, ...(init ? [String(init)] : [])], "capture the sandbox's files");
  }

  /** Hashes the staged tree, seals it and moves it into place; returns the record. */
  async seal(
    id: string,
    tmp: string,
    rec: Omit<SnapshotInfo, "id" | "digests" | "sizeBytes" | "sealed" | "epoch" | "skipped" | "auditId">,
  ): Promise<SnapshotInfo> {
    const { manifest, skipped, bytes } = await hashTree(`${tmp}/tree`, true);
    chmodSync(`${tmp}/tree`, lstatSync(`${tmp}/tree`).mode & 0o7777); // the tree's own mode is the sandbox's "/"
    const mtext = JSON.stringify(manifest);
    const root = `sha256:${sha256hex(mtext)}`;
    const epoch = this.#nextEpoch(id);
    const auditId = `aud_${crypto.randomUUID().replaceAll("-", "").slice(0, 20)}`;
    const { name, ...rest } = rec;
    const info: SnapshotInfo = {
      id,
      ...(name !== undefined ? { name } : {}),
      ...rest,
      sizeBytes: bytes,
      digests: { root, content: manifest.filter((e) => e[1] !== "dir").map(([name, , , , sha256]) => ({ name, sha256 })) },
      sealed: true,
      epoch,
      skipped,
      auditId,
    };
    const meta = JSON.stringify(info);
    const body: Omit<Integrity, "tag_hex"> = {
      schema_version: 2,
      algorithm: "HMAC-SHA256",
      snapshot_id: id,
      epoch,
      meta_digest: `sha256:${sha256hex(meta)}`,
      content_digest: root,
    };
    writeFileSync(`${tmp}/manifest.json`, mtext, { mode: 0o600 });
    writeFileSync(`${tmp}/meta.json`, meta, { mode: 0o600 });
    writeFileSync(`${tmp}/integrity.json`, JSON.stringify({ ...body, tag_hex: this.#tag(body) }), { mode: 0o600 });
    renameSync(tmp, `${this.dir}/${id}`);
    SEALED_HERE.set(id, root);
    auditLog(this.root).append(
      "snapshot.created",
      {
        snapshot: id,
        name: info.name ?? null,
        class: info.class,
        root,
        epoch,
        sizeBytes: bytes,
        expiresAt: info.expiresAt,
        parent: info.parent,
        skipped: skipped.length,
      },
      { sandbox: info.sandboxId, snapshot: id, source: "sdk" },
      auditId,
    );
    return info;
  }

  /** Removes a failed capture's staging folder. */
  discard(tmp: string): void {
    rmSync(tmp, { recursive: true, force: true });
  }

  /**
   * A snapshot's record with its seal and epoch checked (not its files): NOT_FOUND when there is no
   * such snapshot (or it expired and was removed), INTEGRITY when the seal, the epoch or the record
   * does not match.
   */
  #read(id: string): SnapshotInfo {
    const d = `${this.dir}/${id}`;
    const fail = (why: string) =>
      new IntegrityError(`snapshot ${id} ${why}; it is refused (pass { verify: false } to restore it anyway)`, {
        details: { id, reason: why },
      });
    let st;
    try {
      st = lstatSync(d);
    } catch {
      throw new NotFoundError(`no snapshot ${id} (deleted, expired, or never taken here)`, { details: { id } });
    }
    if (!st.isDirectory() || st.uid !== this.uid || (st.mode & 0o077) !== 0) {
      throw fail(`is not a folder of uid ${this.uid} with mode 0700`);
    }
    const text = (name: string) => {
      const p = `${d}/${name}`;
      const s = lstatSync(p, { throwIfNoEntry: false });
      if (!s || !s.isFile()) throw fail(`has no ${name}`);
      return readFileSync(p, "utf8");
    };
    let integ: Integrity;
    try {
      integ = JSON.parse(text("integrity.json")) as Integrity;
    } catch (e) {
      if (e instanceof IntegrityError) throw e;
      throw fail("has an unreadable integrity.json");
    }
    const { tag_hex, ...body } = integ;
    const want = this.#tag(body);
    if (typeof tag_hex !== "string" || tag_hex.length !== want.length || !timingSafeEqual(Buffer.from(tag_hex), Buffer.from(want))) {
      throw fail("does not match its seal (integrity.json was edited, or sealed under another host key)");
    }
    if (body.snapshot_id !== id) throw fail(`is sealed as ${body.snapshot_id} (a snapshot moved into another's place)`);
    const meta = text("meta.json");
    if (`sha256:${sha256hex(meta)}` !== body.meta_digest) throw fail("has a meta.json that does not match its seal");
    let hwm = 0;
    let live = NaN;
    try {
      hwm = Number(readFileSync(`${this.dir}/epoch`, "utf8").trim());
      live = Number(readFileSync(`${this.dir}/ledger/${id}`, "utf8").trim());
    } catch { /* below */ }
    if (!(body.epoch <= hwm) || live !== body.epoch) {
      throw fail(
        Number.isNaN(live)
          ? `has epoch ${body.epoch}, which this host retired (the snapshot was deleted or expired and put back)`
          : `has epoch ${body.epoch}, but the host's ledger says ${live} (high-water mark ${hwm}): an older copy was put in its place`,
      );
    }
    const info = JSON.parse(meta) as SnapshotInfo;
    if (info.id !== id || info.epoch !== body.epoch || info.digests?.root !== body.content_digest) {
      throw fail("has a record that contradicts its seal");
    }
    return info;
  }

  /** Whether a snapshot's retention is over. */
  #expired(info: { expiresAt: string | null }): boolean {
    return info.expiresAt !== null && Date.parse(info.expiresAt) <= Date.now();
  }

  /** The live sandboxes restored on this snapshot's tree (an overlay's lower layer cannot go away under them). */
  #users(id: string): string[] {
    const dir = `${this.dir}/${id}/users`;
    let names: string[] = [];
    try {
      names = readdirSync(dir);
    } catch {
      return [];
    }
    const live: string[] = [];
    for (const sbx of names) {
      const sd = new SandboxDir(this.root, sbx);
      if (ID_RE.test(sbx) && sd.exists() && !sd.has("destroying")) live.push(sbx);
      else rmSync(`${dir}/${sbx}`, { force: true });
    }
    return live;
  }

  /** Records that `sbx` runs on the snapshot's tree. */
  addUser(id: string, sbx: string): void {
    mkdirSync(`${this.dir}/${id}/users`, { recursive: true, mode: 0o700 });
    writeFileSync(`${this.dir}/${id}/users/${sbx}`, "", { mode: 0o600 });
  }

  #remove(id: string, event: string, data: Record<string, unknown> = {}): string {
    const d = `${this.dir}/${id}`;
    const gone = `${this.dir}/.gone-${id}-${crypto.randomUUID().slice(0, 8)}`;
    renameSync(d, gone);
    rmSync(`${this.dir}/ledger/${id}`, { force: true });
    SEALED_HERE.delete(id);
    rmSync(gone, { recursive: true, force: true });
    return auditLog(this.root).append(event, { snapshot: id, ...data }, { snapshot: id, source: "sdk" });
  }

  /** Removes expired snapshots no live sandbox runs on; each removal is an audit entry (`snapshot.expired`). */
  sweep(): void {
    if (!existsSync(this.dir)) return;
    for (const id of readdirSync(this.dir)) {
      if (!SNAPSHOT_ID_RE.test(id)) continue;
      let expiresAt: string | null = null;
      try {
        expiresAt = (JSON.parse(readFileSync(`${this.dir}/${id}/meta.json`, "utf8")) as SnapshotInfo).expiresAt;
      } catch {
        continue;
      }
      if (this.#expired({ expiresAt }) && this.#users(id).length === 0) {
        try {
          this.#remove(id, "snapshot.expired", { expiresAt });
        } catch { /* another process removed it */ }
      }
    }
  }

  /** Every sealed, unexpired snapshot, oldest first (one whose seal does not verify is left out: `get` names why). */
  list(): Promise<SnapshotInfo[]> {
    this.#ensure();
    this.sweep();
    const out: SnapshotInfo[] = [];
    for (const id of readdirSync(this.dir)) {
      if (!SNAPSHOT_ID_RE.test(id)) continue;
      try {
        out.push(this.#read(id));
      } catch { /* tampered or half-removed */ }
    }
    return Promise.resolve(out.sort((a, b) => a.epoch - b.epoch));
  }

  /** One snapshot's record, its seal and epoch checked; an expired one is NOT_FOUND. */
  get(id: string): Promise<SnapshotInfo> {
    this.#ensure();
    const info = this.#read(id);
    if (this.#expired(info)) {
      throw new NotFoundError(`snapshot ${id} expired at ${info.expiresAt}`, { details: { id, expiresAt: info.expiresAt } });
    }
    return Promise.resolve(info);
  }

  /** Removes a snapshot (CONFLICT while a live sandbox runs on it). */
  delete(id: string): Promise<string> {
    this.#ensure();
    if (!existsSync(`${this.dir}/${id}`)) {
      throw new NotFoundError(`no snapshot ${id} (deleted, expired, or never taken here)`, { details: { id } });
    }
    const users = this.#users(id);
    if (users.length) {
      throw new ConflictError(`snapshot ${id} is the read-only layer of the live sandbox(es) ${users.join(", ")}; destroy them first`, {
        details: { id, users },
      });
    }
    return Promise.resolve(this.#remove(id, "snapshot.deleted"));
  }

  /**
   * Checks a snapshot for a restore: its seal and epoch, then every file against the sealed manifest
   * (skipped for a snapshot this process sealed a moment ago, `reuse`). Records `snapshot.verified`,
   * or `snapshot.rejected` and throws INTEGRITY; with `verify: false`, records `snapshot.unverified`
   * and checks nothing.
   */
  async open(id: string, opts: { verify: boolean; reuse: boolean }): Promise<Restorable> {
    this.#ensure();
    const tree = `${this.dir}/${id}/tree`;
    const labels = { snapshot: id, source: "sdk" };
    if (!opts.verify) {
      if (!existsSync(`${this.dir}/${id}`)) {
        throw new NotFoundError(`no snapshot ${id} (deleted, expired, or never taken here)`, { details: { id } });
      }
      let info: SnapshotInfo;
      try {
        info = JSON.parse(readFileSync(`${this.dir}/${id}/meta.json`, "utf8")) as SnapshotInfo;
      } catch {
        info = {
          id,
          sandboxId: "",
          class: "fs_quick",
          createdAt: "",
          expiresAt: null,
          sizeBytes: 0,
          digests: { root: "", content: [] },
          parent: null,
          sealed: true,
          epoch: 0,
          skipped: [],
          auditId: "",
        };
      }
      const auditId = auditLog(this.root).append("snapshot.unverified", { snapshot: id }, labels);
      return { info, tree, verified: false, rehashed: false, auditId };
    }
    let info: SnapshotInfo;
    let rehashed = false;
    try {
      info = await this.get(id);
      const mtext = readFileSync(`${this.dir}/${id}/manifest.json`, "utf8");
      if (`sha256:${sha256hex(mtext)}` !== info.digests.root) {
        throw new IntegrityError(`snapshot ${id} has a manifest that does not match its sealed root digest; it is refused`, {
          details: { id },
        });
      }
      if (!(opts.reuse && SEALED_HERE.get(id) === info.digests.root)) {
        rehashed = true;
        const { manifest } = await hashTree(tree, false);
        const now = JSON.stringify(manifest);
        if (now !== mtext) {
          const want = JSON.parse(mtext) as ManifestEntry[];
          const first = firstDifference(want, manifest);
          throw new IntegrityError(
            `snapshot ${id} does not match its sealed digests (${first}); it is refused (pass { verify: false } to restore it anyway)`,
            {
              details: { id, reason: first },
            },
          );
        }
      }
    } catch (e) {
      if (e instanceof IntegrityError) {
        auditLog(this.root).append("snapshot.rejected", { snapshot: id, reason: String(e.details.reason ?? e.message) }, labels);
      }
      throw e;
    }
    const auditId = auditLog(this.root).append(
      "snapshot.verified",
      { snapshot: id, root: info.digests.root, epoch: info.epoch, rehashed },
      labels,
    );
    return { info, tree, verified: true, rehashed, auditId };
  }
}

/** What differs first between the sealed manifest and the tree as it is. */
function firstDifference(want: ManifestEntry[], got: ManifestEntry[]): string {
  const w = new Map(want.map((e) => [e[0], e]));
  const g = new Map(got.map((e) => [e[0], e]));
  for (const e of got) if (!w.has(e[0])) return `${JSON.stringify(e[0])} was added`;
  for (const e of want) {
    const o = g.get(e[0]);
    if (!o) return `${JSON.stringify(e[0])} was removed`;
    if (JSON.stringify(o) !== JSON.stringify(e)) return `${JSON.stringify(e[0])} was changed`;
  }
  return "the entries were reordered";
}

/** Runs the snapshot helper (as the engine's uid, on the host); returns its output, throws TRANSPORT with what it said on failure. */
export async function runShell(args: string[], what: string): Promise<string> {
  const c = await runtime().spawn("/bin/sh", ["-c", SNAPSHOT_SH, "mvm-snap", ...args], {
    clearEnv: true,
    env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" },
    stdout: "piped",
    stderr: "piped",
  });
  const [out, err, st] = await Promise.all([collectText(c.stdout!), collectText(c.stderr!), c.status]);
  if (st.code !== 0) {
    throw new TransportError(`could not ${what}: ${(out + err).trim().slice(0, 500) || `exit ${st.code ?? st.signal}`}`, {
      details: { exitCode: st.code },
    });
  }
  return out;
}

const COW = new Map<string, Promise<boolean>>();

/**
 * Whether a state root's sandbox folders are on a filesystem that clones files by reflink (XFS with
 * reflink, btrfs): a probe file copied with `cp --reflink=always`, once per root and process.
 *
 * @example `if (await cowStorage("/var/lib/mvm/sandboxes")) console.log("forks clone, flat in size")`
 */
export function cowStorage(root: string): Promise<boolean> {
  let p = COW.get(root);
  if (!p) {
    p = runShell(["cow", root], "probe for reflinks").then(() => true, () => false);
    COW.set(root, p);
  }
  return p;
}

/**
 * Clones a sandbox's root into a fork's root folder (one helper run: `sh` and `cp`): freezes `group`
 * (null: the sandbox is paused or stopped already; one that does not freeze is not read, TRANSPORT
 * with `details.frozen: false`), clones by reflink only (O(files): no byte copied, nothing hashed;
 * TRANSPORT where the filesystem cannot; symlinks stay symlinks, nothing is followed), and thaws
 * unless `pausedMark` appeared meanwhile, also on failure. Returns whether the thaw went through.
 *
 * @example `await cloneTree(parentRoot, childRoot, cgroup, pausedMarker)`
 */
export async function cloneTree(src: string, dst: string, group: string | null, pausedMark: string): Promise<{ thawed: boolean }> {
  let out: string;
  try {
    out = await runShell(["clone", src, dst, group ?? "-", pausedMark], "clone the sandbox's files for a fork");
  } catch (e) {
    if (e instanceof TransportError && e.details.exitCode === 3) {
      throw new TransportError(`the sandbox did not freeze within 2 s; no fork was made`, { details: { frozen: false } });
    }
    throw e;
  }
  return { thawed: !out.includes("error the sandbox did not thaw") };
}

/**
 * Makes a clone the fork's own, in this process (a spawn costs more than the walk): fifos, sockets
 * and devices are removed and returned, as a snapshot skips them, and every other entry is given to
 * `uid` (null: kept) with `lchown`, which never follows a link. No guest process can reach the clone
 * yet, so nothing in it changes under the walk.
 *
 * @example `const skipped = adoptTree("/var/lib/mvm/sandboxes/sbx-…/root", 2_000_000_123)`
 */
export function adoptTree(top: string, uid: number | null): { name: string; kind: string }[] {
  const skipped: { name: string; kind: string }[] = [];
  const walk = (dir: Buffer, rel: Buffer | null) => {
    // names as bytes (any name round-trips), kinds by lstat (Bun's buffer Dirents have no name)
    for (const n of readdirSync(dir, { encoding: "buffer" }) as Buffer[]) {
      const path = Buffer.concat([dir, Buffer.from("/"), n]);
      const name = rel ? Buffer.concat([rel, Buffer.from("/"), n]) : n;
      const e = lstatSync(path);
      if (e.isDirectory()) walk(path, name);
      if (e.isFile() || e.isDirectory() || e.isSymbolicLink()) {
        if (uid !== null) lchownSync(path, uid, uid);
      } else {
        skipped.push({ name: decodeName(name), kind: kindOf(e) });
        rmSync(path, { force: true });
      }
    }
  };
  const root = Buffer.from(top);
  walk(root, null);
  if (uid !== null) lchownSync(root, uid, uid);
  return skipped.sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
}

/** The restore info a new sandbox carries. */
export function restoreInfo(r: Restorable, mode: "overlay" | "copy"): RestoreInfo {
  return { snapshotId: r.info.id, verified: r.verified, restore: mode, rehashed: r.rehashed, auditId: r.auditId };
}

/** Whether a path can go into overlayfs mount options as it is (no `,` `:` `\` or whitespace). */
export function overlaySafe(path: string): boolean {
  return /^\/[A-Za-z0-9._/+@-]*$/.test(path);
}

const STORES = new Map<string, SnapshotStore>();
/** The snapshot store of the engine's state root, one per process. @example `snapshotStore(await preflight()).list()` */
export function snapshotStore(t: { root: string; uid: number }): SnapshotStore {
  let s = STORES.get(t.root);
  if (!s) STORES.set(t.root, s = new SnapshotStore(t.root, t.uid));
  return s;
}
