/**
 * Host ↔ sandbox copies of files and folders (`sb.files.upload` / `sb.files.download`), built on the
 * verbs every engine has: an upload sends a folder as one tar stream (`writeTar`, see `tar.ts`), a
 * download takes one from the sandbox (`readTar`) and unpacks it with the SDK's own reader.
 *
 * Everything in a sandbox is the guest's, its symlinks and the tar stream included (guest code can
 * trace the `tar` that packs it): a download never follows a sandbox symlink, writes one on the host
 * only when its target stays inside the download (relative, no `..`), takes an entry only into a
 * folder it made or found as a real folder (never below a symlink or file of the stream), takes each
 * path once, and writes every file as a new one (`O_EXCL`: never through a symlink), refusing to
 * replace a host file unless `{ overwrite: true }`; what it leaves out is in `skipped`, with the
 * reason. A damaged or cut-off stream is a `TransportError`, with no half-written file left.
 *
 * @example A folder in, a folder out
 * ```ts
 * import assert from "node:assert/strict";
 * import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { Sandbox } from "@mvm/sdk";
 *
 * const src = mkdtempSync(`${tmpdir()}/src-`);
 * writeFileSync(`${src}/a.txt`, "a");
 * await using sb = await Sandbox.create();
 * await sb.files.upload(src, "/app/proj");
 * const out = mkdtempSync(`${tmpdir()}/out-`);
 * const r = await sb.files.download("/app/proj", out);
 * assert.equal(r.files, 1);
 * assert.equal(readFileSync(`${out}/a.txt`, "utf8"), "a");
 * ```
 * @module
 */
import {
  linkSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readlinkSync,
  renameSync,
  type Stats,
  statSync,
  symlinkSync,
  unlinkSync,
} from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import {
  ConflictError,
  InvalidInputError,
  NoSpaceError,
  NotADirectoryError,
  NotFoundError,
  PermissionDeniedError,
  SandboxError,
  TransportError,
} from "./errors.ts";
import { hostRefusal } from "./runtime/mod.ts";
import { pad, readTarEntries, TAR_END, TarFormatError, tarHeader } from "./tar.ts";
import { decodeName } from "./filenames.ts";
import { checkPositive } from "./validate.ts";
import type { FileInfo } from "./types.ts";

/**
 * How far a transfer got: bytes of file content and files done so far.
 *
 * @example A progress line
 * ```ts
 * import type { TransferProgress } from "@mvm/sdk";
 * const line = (p: TransferProgress) => `${p.files} files, ${(p.bytes / 1048576).toFixed(1)} MiB`;
 * ```
 */
export interface TransferProgress {
  /** Bytes of file content moved so far. */
  bytes: number;
  /** Files done so far. */
  files: number;
}

/**
 * Options of `files.upload` and `files.download`.
 *
 * @example Progress of a long transfer
 * ```ts
 * import type { TransferOptions } from "@mvm/sdk";
 * const options: TransferOptions = { onProgress: ({ bytes, files }) => console.log(`${files} files, ${bytes} bytes`) };
 * ```
 */
export interface TransferOptions {
  /** Called as content flows (at most every 250 ms while a file streams) and after each file. */
  onProgress?: (progress: TransferProgress) => void;
  /** Download only: replace host files (and symlinks) already at a destination path; default false (`ConflictError`). */
  overwrite?: boolean;
  /**
   * Ends the transfer when it aborts (e.g. `AbortSignal.timeout(60_000)`): the call rejects at once with the
   * signal's reason, and the helpers streaming in the sandbox are ended. What was written stays (a download's
   * files in flight are temporary files, removed). Guest code can stop those helpers (SIGSTOP): a signal bounds the wait.
   */
  signal?: AbortSignal | undefined;
  /**
   * Download only: the most bytes of file content to write (default: no bound). Past it the download ends with an
   * `InvalidInputError`; the file in flight is removed. A guest can present files of any size (a sparse file).
   */
  maxBytes?: number | undefined;
}

/**
 * What a transfer did: files, folders and symlinks written, bytes of file content, and each entry
 * left out with the reason (special files, symlinks that would lead out of the download, names that
 * are not UTF-8).
 *
 * @example Reading what was skipped
 * ```ts
 * import type { TransferResult } from "@mvm/sdk";
 * const report = (r: TransferResult) => r.skipped.map((s) => `${s.path}: ${s.reason}`).join("\n");
 * ```
 */
export interface TransferResult {
  /** Regular files written. */
  files: number;
  /** Folders made (or merged into) below the target. */
  dirs: number;
  /** Symlinks made. */
  symlinks: number;
  /** Bytes of file content. */
  bytes: number;
  /** What was left out: the path on the side it came from, and why. */
  skipped: Array<{ path: string; reason: string }>;
}

/** The per-file verbs a transfer is built on (the SDK's `Files`). */
export interface TransferFiles {
  write(path: string, data: ReadableStream<Uint8Array>, options: { mode: number; createParents: boolean }): Promise<unknown>;
  readStream(path: string): Promise<ReadableStream<Uint8Array>>;
  list(path: string): Promise<FileInfo[]>;
  stat(path: string): Promise<FileInfo>;
  mkdir(path: string, options: { parents: boolean; mode: number }): Promise<unknown>;
  remove(path: string): Promise<unknown>;
  symlink(target: string, path: string): Promise<unknown>;
  readlink(path: string): Promise<string>;
  writeTar(dir: string, tar: ReadableStream<Uint8Array>): Promise<unknown>;
  readTar(dir: string): Promise<ReadableStream<Uint8Array>>;
}

const SKIPPED_MAX = 10_000;
const cut = (s: string) => s.length > 1024 ? `${s.slice(0, 1024)}…` : s;

/** Counts and reports progress, throttled while a file streams. */
export class Tally {
  readonly result: TransferResult = { files: 0, dirs: 0, symlinks: 0, bytes: 0, skipped: [] };
  #last = 0;
  constructor(readonly onProgress: TransferOptions["onProgress"], readonly maxBytes = Infinity) {}
  counted(): TransformStream<Uint8Array, Uint8Array> {
    return new TransformStream({
      transform: (chunk, c) => {
        this.result.bytes += chunk.length;
        this.tick();
        c.enqueue(chunk);
      },
    });
  }
  /** Reports if the last report is 250 ms old. */
  tick(): void {
    if (this.onProgress && Date.now() - this.#last >= 250) this.report();
  }
  report(): void {
    this.#last = Date.now();
    this.onProgress?.({ bytes: this.result.bytes, files: this.result.files });
  }
  /** Records what was left out; names and reasons are cut at 1,024 characters, the list at 10,000 entries. */
  skip(path: string, reason: string): void {
    const list = this.result.skipped;
    if (list.length < SKIPPED_MAX) list.push({ path: cut(path), reason: cut(reason) });
    else {
      this.#more++;
      list[SKIPPED_MAX] = { path: "…", reason: `${this.#more} more entries were left out (the list keeps ${SKIPPED_MAX})` };
    }
  }
  #more = 0;
}

const join = (dir: string, name: string) => `${dir.replace(/\/+$/, "")}/${name}`;
const baseName = (p: string) => p.replace(/\/+$/, "").split("/").pop() || "";

/** A host file as a stream of 256 KiB chunks, pulled as the consumer asks. @example `await hostFileStream("/tmp/a")` */
export async function hostFileStream(path: string): Promise<ReadableStream<Uint8Array>> {
  const h = await open(path, "r");
  return new ReadableStream<Uint8Array>({
    async pull(c) {
      const buf = new Uint8Array(256 * 1024);
      const { bytesRead } = await h.read(buf, 0, buf.length, null);
      if (bytesRead === 0) {
        await h.close();
        return c.close();
      }
      c.enqueue(buf.subarray(0, bytesRead));
    },
    cancel: () => h.close(),
  }, { highWaterMark: 0 });
}

/** A host error as a typed one: Deno's refusals name their flag; a missing path is NOT_FOUND. */
function hostError(e: unknown, op: string, path: string): unknown {
  if (e instanceof SandboxError) return e;
  const refused = hostRefusal(e);
  if (refused) return refused;
  const code = (e as NodeJS.ErrnoException)?.code;
  const msg = `files.${op}: host path ${JSON.stringify(path)}: ${(e as Error)?.message ?? e}`;
  if (code === "ENOENT") return new NotFoundError(msg, { cause: e, details: { hostPath: path } });
  if (code === "EACCES" || code === "EPERM" || code === "EROFS") {
    return new PermissionDeniedError(msg, { cause: e, details: { hostPath: path } });
  }
  if (code === "ENOTDIR") return new NotADirectoryError(msg, { cause: e, details: { hostPath: path } });
  if (code === "EEXIST") return new ConflictError(msg, { cause: e, details: { hostPath: path } });
  if (code === "ENOSPC" || code === "EDQUOT") return new NoSpaceError(msg, { cause: e, details: { hostPath: path } });
  if (code === "ENAMETOOLONG") return new InvalidInputError(msg, { cause: e, details: { field: "path", hostPath: path } });
  return e;
}

/**
 * Copies a host file or folder into the sandbox: a file lands in `sandboxDir` under its own name, a
 * folder's contents land in `sandboxDir` (made if missing). Host symlinks inside a folder are made as
 * symlinks (never followed); special files are skipped. Sandbox files at the same paths are replaced.
 *
 * @example `await upload(sb.files, "./src", "/app/src", {})`
 */
export async function upload(
  files: TransferFiles,
  hostPath: string,
  sandboxDir: string,
  options: TransferOptions,
): Promise<TransferResult> {
  const t = new Tally(options.onProgress);
  let st: Stats;
  try {
    st = statSync(hostPath); // the path the caller named may be a symlink: that one is followed
  } catch (e) {
    throw hostError(e, "upload", hostPath);
  }
  await files.mkdir(sandboxDir, { parents: true, mode: 0o755 });
  // a folder goes as one tar stream (the agent's tar -x, in the jail): two agent calls per file cost ~100 ms each
  if (st.isDirectory()) await files.writeTar(sandboxDir, hostTar(hostPath, t));
  else await pushEntry(files, hostPath, join(sandboxDir, baseName(hostPath)), st, t);
  t.report();
  return t.result;
}

/** A host folder's contents as a tar stream, read as it is pulled; counts into `t`. */
export function hostTar(root: string, t: Tally): ReadableStream<Uint8Array> {
  const it = tarBlocks(root, "", t);
  return new ReadableStream<Uint8Array>({
    async pull(c) {
      const r = await it.next();
      if (r.done) c.close();
      else c.enqueue(r.value);
    },
    async cancel() {
      await it.return(undefined);
    },
  }, { highWaterMark: 0 });
}

async function* tarBlocks(root: string, rel: string, t: Tally): AsyncGenerator<Uint8Array> {
  const dir = rel ? join(root, rel) : root;
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch (e) {
    throw hostError(e, "upload", dir);
  }
  for (const name of names) {
    const h = join(dir, name);
    const r = rel ? `${rel}/${name}` : name;
    if (name.includes("\uFFFD")) {
      t.skip(h, "its name is not valid UTF-8");
      continue;
    }
    let st: Stats;
    try {
      st = lstatSync(h);
    } catch (e) {
      throw hostError(e, "upload", h);
    }
    const mtime = st.mtimeMs / 1000;
    if (st.isDirectory()) {
      yield tarHeader({ name: r, type: "dir", size: 0, mode: st.mode, mtime });
      t.result.dirs++;
      yield* tarBlocks(root, r, t);
    } else if (st.isSymbolicLink()) {
      let linkname: string;
      try {
        linkname = readlinkSync(h);
      } catch (e) {
        throw hostError(e, "upload", h);
      }
      yield tarHeader({ name: r, type: "symlink", size: 0, mode: 0o777, mtime, linkname });
      t.result.symlinks++;
    } else if (st.isFile()) {
      yield tarHeader({ name: r, type: "file", size: st.size, mode: st.mode, mtime });
      yield* fileBlocks(h, st.size, t);
      t.result.files++;
      t.report();
    } else {
      t.skip(h, "not a regular file, folder or symlink");
    }
  }
  if (rel === "") yield TAR_END;
}

/** Exactly `size` bytes of a host file, padded to a block; a file that shrank meanwhile fails the upload. */
async function* fileBlocks(h: string, size: number, t: Tally): AsyncGenerator<Uint8Array> {
  let fh: FileHandle;
  try {
    fh = await open(h, "r");
  } catch (e) {
    throw hostError(e, "upload", h);
  }
  try {
    for (let left = size; left > 0;) {
      const buf = new Uint8Array(Math.min(left, 256 * 1024));
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) {
        throw new ConflictError(`files.upload: host file ${JSON.stringify(h)} shrank while it was read; nothing after it was sent`, {
          details: { hostPath: h },
        });
      }
      left -= bytesRead;
      t.result.bytes += bytesRead;
      t.tick();
      yield buf.subarray(0, bytesRead);
    }
  } finally {
    await fh.close().catch(() => {});
  }
  if (pad(size)) yield new Uint8Array(pad(size));
}

async function pushEntry(files: TransferFiles, h: string, g: string, st: Stats, t: Tally): Promise<void> {
  if (st.isDirectory()) {
    await files.mkdir(g, { parents: false, mode: st.mode & 0o777 }).catch((e) => {
      if (!(e instanceof ConflictError) && !(e instanceof SandboxError && e.code === "CONFLICT")) throw e;
    });
    t.result.dirs++;
    return;
  }
  if (st.isSymbolicLink()) {
    let target: string;
    try {
      target = readlinkSync(h);
    } catch (e) {
      throw hostError(e, "upload", h);
    }
    try {
      await files.symlink(target, g);
    } catch (e) {
      if (!(e instanceof ConflictError)) throw e;
      await files.remove(g);
      await files.symlink(target, g);
    }
    t.result.symlinks++;
    return;
  }
  if (!st.isFile()) return t.skip(h, "not a regular file, folder or symlink");
  let data: ReadableStream<Uint8Array>;
  try {
    data = await hostFileStream(h);
  } catch (e) {
    throw hostError(e, "upload", h);
  }
  await files.write(g, data.pipeThrough(t.counted()), { mode: st.mode & 0o7777, createParents: false });
  t.result.files++;
  t.report();
}

/**
 * Whether a symlink's target, written at any depth of a download, stays inside it whatever the other
 * symlinks there point at: relative, and no `..` component (so it only ever leads down).
 *
 * @example `linkStaysInside("lib/a.so") // true; linkStaysInside("../x") // false`
 */
export function linkStaysInside(target: string): boolean {
  return target !== "" && !target.startsWith("/") && !target.includes("\0") && !target.split("/").includes("..");
}

/** A name from the sandbox that can be a host file name as it is (no separator, no `.`/`..`, valid UTF-8). */
function hostName(name: string): string | null {
  if (name === "" || name === "." || name === ".." || name.includes("/") || name.includes("\0")) return "not a file name";
  if (/[\uD800-\uDFFF]/.test(name)) return "its name is not valid UTF-8";
  if (utf8.encode(name).length > 255) return "its name is longer than a host file name may be (255 bytes)";
  return null;
}
const utf8 = new TextEncoder();

/**
 * Copies a sandbox file or folder to the host: a folder's contents land in `hostDir` (made if missing),
 * a file lands in `hostDir` under its own name. Never follows a sandbox symlink; see the module's text.
 *
 * @example `await download(sb.files, "/app/out", "./out", { overwrite: true })`
 */
export async function download(
  files: TransferFiles,
  sandboxPath: string,
  hostDir: string,
  options: TransferOptions,
): Promise<TransferResult> {
  const t = new Tally(options.onProgress, checkPositive(options.maxBytes, "maxBytes", true));
  const info = await files.stat(sandboxPath);
  try {
    mkdirSync(hostDir, { recursive: true, mode: 0o755 });
    if (!statSync(hostDir).isDirectory()) {
      throw new NotADirectoryError(`files.download: host path ${JSON.stringify(hostDir)} is not a folder`, {
        details: { hostPath: hostDir },
      });
    }
  } catch (e) {
    throw hostError(e, "download", hostDir);
  }
  const overwrite = options.overwrite === true;
  if (info.type === "dir") await pullTar(files, sandboxPath, hostDir, overwrite, t);
  else await pullEntry(files, info, sandboxPath, join(hostDir, info.name), overwrite, t);
  t.report();
  return t.result;
}

const SPECIAL: Record<string, string> = { "3": "a character device", "4": "a block device", "6": "a fifo" };

/**
 * A folder through one tar stream from the sandbox (`readTar`), unpacked here by our own reader, never
 * by a host `tar`: the stream is the guest's (it can trace the packing `tar`), so every entry is
 * checked as the per-file walk would be. A name must be a relative path of plain names (no `..`, no
 * `.`, valid UTF-8, host-sized); its folder must be one this download made or found as a real folder
 * (never a symlink or file of the stream: `a` as a symlink then `a/x` is refused); each path is taken
 * once; a hard link is a host hard link to a file this download wrote; fifos and devices are skipped.
 * Symlinks are made last, and only those whose target (relative, no `..`) is a folder, file or
 * already-made symlink of this download reached through its folders: none leads out, not even
 * through a symlink the host folder already had.
 */
async function pullTar(files: TransferFiles, guest: string, host: string, overwrite: boolean, t: Tally): Promise<void> {
  const made = new Map<string, "dir" | "file" | "symlink">([["", "dir"]]);
  let links: Array<{ rel: string; target: string }> = [];
  const pending = new Set<string>();
  const entries = readTarEntries(await files.readTar(guest), decodeName);
  try {
    for await (const e of entries) {
      const rel = relative(e.path);
      if (rel === "") continue; // the folder itself
      const g = join(guest, rel);
      const parts = rel.split("/");
      const bad = parts.map(hostName).find((r) => r !== null) ?? (utf8.encode(rel).length > 4000 ? "its path is too long" : null);
      if (bad) {
        t.skip(g, bad);
        continue;
      }
      if (made.get(parts.slice(0, -1).join("/")) !== "dir") {
        t.skip(g, "its folder is not a folder of this download (a symlink, a file, or left out)");
        continue;
      }
      if (made.has(rel) || pending.has(rel)) {
        t.skip(g, "it appears twice in the sandbox's tar stream");
        continue;
      }
      const h = join(host, rel);
      if (e.type === "dir") {
        makeDir(h, e.mode, overwrite);
        made.set(rel, "dir");
        t.result.dirs++;
      } else if (e.type === "symlink") {
        if (!linkStaysInside(e.linkname)) {
          t.skip(g, `a symlink to ${JSON.stringify(e.linkname)}, which could lead out of the download (absolute or with "..")`);
        } else if (/[\uD800-\uDFFF]/.test(e.linkname)) t.skip(g, "a symlink whose target is not valid UTF-8");
        else {
          links.push({ rel, target: e.linkname });
          pending.add(rel);
        }
      } else if (e.type === "file") {
        await writeFile(h, e.mode, e.body(), overwrite, t);
        made.set(rel, "file");
      } else if (e.type === "hardlink") {
        const target = relative(e.linkname);
        if (made.get(target) !== "file") {
          t.skip(g, `a hard link to ${JSON.stringify(e.linkname)}, which is not a file this download wrote`);
          continue;
        }
        clear(h, overwrite, "download");
        try {
          linkSync(join(host, target), h);
        } catch (err) {
          throw hostError(err, "download", h);
        }
        made.set(rel, "file");
        t.result.files++;
      } else {
        t.skip(g, `${SPECIAL[e.typeflag] ?? "a special file"}, not a regular file, folder or symlink`);
      }
    }
  } catch (e) {
    if (e instanceof TarFormatError) {
      throw new TransportError(`files.download: the sandbox sent a damaged tar stream of ${guest}: ${e.message}`, { cause: e });
    }
    throw e;
  }
  // symlinks last: each must lead to what this download made, through its folders only; a link to a
  // link waits for a round in which that one was made
  for (let before = -1; links.length !== before;) {
    before = links.length;
    links = links.filter(({ rel, target }) => {
      const to = relative([...rel.split("/").slice(0, -1), ...target.split("/")].join("/"));
      const parts = to === "" ? [] : to.split("/");
      if (parts.slice(0, -1).some((_, k) => made.get(parts.slice(0, k + 1).join("/")) !== "dir") || !made.has(to)) return true;
      makeLink(target, join(host, rel), overwrite);
      made.set(rel, "symlink");
      t.result.symlinks++;
      return false;
    });
  }
  for (const { rel, target } of links) {
    t.skip(
      join(guest, rel),
      `a symlink to ${JSON.stringify(target)}, which is not something this download wrote (missing, or reached through a symlink)`,
    );
  }
}

/** A tar name as a relative path: no leading `/` or `./`, no empty parts (`.` and `..` stay, for hostName to refuse). */
function relative(name: string): string {
  return name.split("/").filter((p, i) => p !== "" && !(p === "." && i === 0)).join("/");
}

/** Makes way for a new entry at `h`: nothing there, or (with `overwrite`) a file or symlink removed; never a folder. */
function clear(h: string, overwrite: boolean, op: string): void {
  if (!checkFree(h, overwrite, op)) return;
  try {
    unlinkSync(h);
  } catch (e) {
    throw hostError(e, op, h);
  }
}

/** False when nothing is at `h`; true when a file or symlink is there and `overwrite` allows replacing it; else CONFLICT. */
function checkFree(h: string, overwrite: boolean, op: string): boolean {
  let st: Stats;
  try {
    st = lstatSync(h);
  } catch (e) {
    if ((e as NodeJS.ErrnoException)?.code === "ENOENT") return false;
    throw hostError(e, op, h);
  }
  if (!overwrite || st.isDirectory()) {
    throw new ConflictError(
      `files.download: ${JSON.stringify(h)} exists on the host${st.isDirectory() ? " and is a folder" : ""}; ` +
        (st.isDirectory() ? "remove it first" : "pass { overwrite: true } to replace it"),
      { details: { hostPath: h } },
    );
  }
  return true;
}

/** A folder at `h`: made, or one already there (a real one, never a symlink) that takes the contents. */
function makeDir(h: string, mode: number, overwrite: boolean): void {
  try {
    mkdirSync(h, { mode: (mode & 0o777) | 0o700 });
  } catch (err) {
    const st = (err as NodeJS.ErrnoException)?.code === "EEXIST" ? lstatSync(h) : null;
    if (!st?.isDirectory()) {
      if (!st) throw hostError(err, "download", h);
      clear(h, overwrite, "download");
      mkdirSync(h, { mode: (mode & 0o777) | 0o700 });
    }
  }
}

function makeLink(target: string, h: string, overwrite: boolean): void {
  clear(h, overwrite, "download");
  try {
    symlinkSync(target, h);
  } catch (err) {
    throw hostError(err, "download", h);
  }
}

/**
 * A new file at `h` with `content`: written to a new temporary file beside it (`O_EXCL`: never through
 * a symlink) and renamed into place at the end, so a cut stream leaves no half file and, with
 * `overwrite`, the old file stays until the new one is whole.
 */
async function writeFile(h: string, mode: number, content: AsyncIterable<Uint8Array>, overwrite: boolean, t: Tally): Promise<void> {
  checkFree(h, overwrite, "download");
  const tmp = `${h.slice(0, h.lastIndexOf("/") + 1)}.mvm-download-${crypto.randomUUID().slice(0, 12)}`;
  let fh: FileHandle;
  try {
    fh = await open(tmp, "wx", mode & 0o777);
  } catch (err) {
    throw hostError(err, "download", h);
  }
  try {
    for await (const chunk of content) {
      t.result.bytes += chunk.length;
      if (t.result.bytes > t.maxBytes) {
        throw new InvalidInputError(
          `files.download: more than maxBytes (${t.maxBytes}) bytes of file content; the file in flight (${JSON.stringify(h)}) was removed`,
          { details: { field: "maxBytes", path: h, maxBytes: t.maxBytes } },
        );
      }
      t.tick();
      let at = 0;
      while (at < chunk.length) at += (await fh.write(chunk, at, chunk.length - at)).bytesWritten;
    }
    await fh.close();
    checkFree(h, overwrite, "download");
    renameSync(tmp, h); // replaces a file or a symlink itself, never what a symlink points at
  } catch (err) {
    await fh.close().catch(() => {});
    try {
      unlinkSync(tmp); // no half file left behind
    } catch { /* gone */ }
    throw hostError(err, "download", h);
  }
  t.result.files++;
  t.report();
}

/** A single file or symlink (a download whose source is not a folder). */
async function pullEntry(files: TransferFiles, e: FileInfo, g: string, h: string, overwrite: boolean, t: Tally): Promise<void> {
  if (e.type === "symlink") {
    const target = await files.readlink(g);
    if (!linkStaysInside(target)) {
      return t.skip(g, `a symlink to ${JSON.stringify(target)}, which could lead out of the download (absolute or with "..")`);
    }
    makeLink(target, h, overwrite);
    t.result.symlinks++;
    return;
  }
  if (e.type !== "file") return t.skip(g, `a ${e.type} file, not a regular file, folder or symlink`);
  await writeFile(h, e.mode, await files.readStream(g), overwrite, t);
}
