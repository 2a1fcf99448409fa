/**
 * Files inside a sandbox from the caller's side: `Files` (`sb.files`) and `WriteOptions`.
 *
 * @example A file round trip
 * ```ts
 * import assert from "node:assert/strict";
 * import { Sandbox } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * await sb.files.write("/app/a.txt", "a");
 * assert.equal(await sb.files.readText("/app/a.txt"), "a");
 * ```
 * @module
 */
import { invalid, InvalidInputError, NotFoundError, UnsupportedError } from "./errors.ts";
import type { EngineFiles, WrittenFile } from "./engines/contract.ts";
import { download, type TransferOptions, type TransferResult, upload } from "./transfer.ts";
import { abortable, collectBytes, toStream, untilAborted } from "./streams.ts";
import type { FileInfo } from "./types.ts";
import { checkMovablePath, checkPath, checkPositive, checkSignal } from "./validate.ts";
import type { Sandbox } from "./sandbox.ts";

/** What `files.read` holds in memory at most unless told otherwise (`maxBytes`). */
const READ_MAX_BYTES = 1 << 30;

/**
 * What `files.write` takes: text (written as UTF-8), bytes, a `Blob` (or
 * `File`), or a stream of byte chunks.
 *
 * @example Every kind of data
 * ```ts
 * import assert from "node:assert/strict";
 * import { type FileData, Sandbox } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * const kinds: FileData[] = ["a", new Uint8Array([98]), new TextEncoder().encode("c").buffer, new Blob(["d"]), new Blob(["e"]).stream()];
 * for (const [i, data] of kinds.entries()) await sb.files.write(`/app/${i}`, data);
 * assert.equal(await sb.files.readText("/app/3"), "d");
 * ```
 */
export type FileData = string | ArrayBuffer | ArrayBufferView | Blob | ReadableStream<Uint8Array>;

/**
 * Options of `files.write`.
 *
 * @example A private file in a new folder
 * ```ts
 * import assert from "node:assert/strict";
 * import { Sandbox, type WriteOptions } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * const options: WriteOptions = { mode: 0o600, createParents: true };
 * const w = await sb.files.write("/app/keys/id", "secret-ish", options);
 * assert.equal(w.mode, 0o600);
 * ```
 */
export interface WriteOptions {
  /** File mode, default 0o644. */
  mode?: number;
  /** Create missing parent directories (default true). */
  createParents?: boolean;
  /** Resume the sandbox first if it is paused (otherwise a paused sandbox throws `ConflictError`). */
  resume?: boolean;
}

/**
 * Files inside the sandbox. Every operation runs inside the sandbox's own
 * view, so no path can reach the host. Relative paths resolve against the
 * sandbox's working directory (`/`).
 *
 * @example Writing, reading and listing
 * ```ts
 * import assert from "node:assert/strict";
 * import { type Files, Sandbox } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * const files: Files = sb.files;
 * await files.write("/app/main.py", "print('hi')");
 * assert.equal(await files.readText("/app/main.py"), "print('hi')");
 * assert.deepEqual((await files.list("/app")).map((f) => f.name), ["main.py"]);
 * assert.equal(await files.exists("/app/missing.py"), false);
 * ```
 */
export class Files {
  readonly #sb: Sandbox;
  /** @internal Made by {@linkcode Sandbox}; callers reach it as `sb.files`. */
  constructor(sb: Sandbox) {
    this.#sb = sb;
  }
  /**
   * Reads a whole file into memory, at most `maxBytes` (default 1 GiB: a guest can present a file of any
   * size; past it the read ends with an `InvalidInputError`, and `readStream` streams any size). With
   * `signal`, an abort rejects at once with the signal's reason and ends the read's helper in the sandbox
   * (guest code can stop that helper; a signal, e.g. `AbortSignal.timeout(ms)`, bounds the wait).
   *
   * @example `const bytes = await sb.files.read("/etc/hostname", { signal: AbortSignal.timeout(10_000) })`
   */
  async read(path: string, options: { signal?: AbortSignal | undefined; maxBytes?: number | undefined } = {}): Promise<Uint8Array> {
    const max = checkPositive(options.maxBytes, "maxBytes", true) ?? READ_MAX_BYTES;
    const stream = await this.readStream(path, { signal: options.signal });
    return await collectBytes(stream, max, () =>
      new InvalidInputError(
        `files.read ${JSON.stringify(path)}: the file holds more than maxBytes (${max}) bytes; stream it with readStream, ` +
          `or pass a larger maxBytes (a guest can make a file of any size: a sparse file, a link into /proc)`,
        { details: { field: "maxBytes", path, maxBytes: max } },
      ));
  }
  /** Reads a whole file as UTF-8; `signal` and `maxBytes` as for `read`. @example `await sb.files.readText("/app/out.txt")` */
  async readText(path: string, options: { signal?: AbortSignal | undefined; maxBytes?: number | undefined } = {}): Promise<string> {
    return new TextDecoder().decode(await this.read(path, options));
  }
  /**
   * Streams a file, optionally a byte range; `signal` as for `read` (an abort errors the stream with its reason).
   *
   * @example `const s = await sb.files.readStream("/big", { offset: 0, length: 1024 })`
   */
  async readStream(
    path: string,
    range: { offset?: number | undefined; length?: number | undefined; signal?: AbortSignal | undefined } = {},
  ): Promise<ReadableStream<Uint8Array>> {
    checkPath(path);
    const signal = checkSignal(range.signal);
    signal?.throwIfAborted();
    if (range.offset !== undefined && (!Number.isSafeInteger(range.offset) || range.offset < 0)) {
      throw invalid("offset", "must be a whole number ≥ 0");
    }
    if (range.length !== undefined && (!Number.isSafeInteger(range.length) || range.length < 0)) {
      throw invalid("length", "must be a whole number ≥ 0");
    }
    const { offset, length } = range;
    const r = { ...(offset !== undefined ? { offset } : {}), ...(length !== undefined ? { length } : {}) };
    return await abortable(this.#sb._engine().files.readStream(path, r, signal), signal);
  }
  /**
   * Writes a file atomically (a reader sees the old or the new file, never half
   * of one). `data` is text (UTF-8), bytes (`Uint8Array`, any
   * `ArrayBufferView`, `ArrayBuffer`), a `Blob` (or `File`) or a byte stream of
   * any size.
   *
   * @example `await sb.files.write("/app/data.bin", stream, { mode: 0o600 })`
   */
  write(path: string, data: FileData, options?: WriteOptions): Promise<WrittenFile>;
  /**
   * Writes several files, in order, each atomically (the batch as a whole is
   * not: a failure leaves the files before it written); an entry's own `mode`
   * wins over `options.mode`. Returns each file's entry.
   *
   * @example `await sb.files.write([{ path: "/app/a.py", data: "print(1)" }, { path: "/app/b.py", data: "print(2)" }])`
   */
  write(files: Array<{ path: string; data: FileData; mode?: number }>, options?: WriteOptions): Promise<WrittenFile[]>;
  async write(
    pathOrFiles: string | Array<{ path: string; data: FileData; mode?: number }>,
    dataOrOptions?: FileData | WriteOptions,
    options: WriteOptions = {},
  ): Promise<WrittenFile | WrittenFile[]> {
    if (Array.isArray(pathOrFiles)) {
      const opts = (dataOrOptions ?? {}) as WriteOptions;
      pathOrFiles.forEach((f, i) => {
        if (typeof f !== "object" || f === null) throw invalid(`files[${i}]`, "must be an object { path, data, mode? }");
        checkPath(f.path, `files[${i}].path`);
        if (f.data === undefined) throw invalid(`files[${i}].data`, "is missing: give the file's content");
      });
      const out: WrittenFile[] = [];
      for (const f of pathOrFiles) {
        out.push(await this.#writeOne(f.path, f.data, { ...opts, ...(f.mode !== undefined ? { mode: f.mode } : {}) }));
      }
      return out;
    }
    return await this.#writeOne(pathOrFiles, dataOrOptions as FileData, options);
  }
  async #writeOne(path: string, data: FileData, options: WriteOptions, signal?: AbortSignal): Promise<WrittenFile> {
    checkPath(path);
    const mode = options.mode ?? 0o644;
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) throw invalid("mode", "must be a file mode between 0 and 0o7777");
    if (options.resume) await this.#sb._resumeIfPaused();
    return await this.#sb._engine().files.write(path, toStream(data), { mode, createParents: options.createParents ?? true }, signal);
  }
  /** Lists a directory. @example `const entries = await sb.files.list("/app")` */
  async list(path: string): Promise<FileInfo[]> {
    return await this.#sb._engine().files.list(checkPath(path));
  }
  /** Metadata of a path (symlinks are not followed). @example `(await sb.files.stat("/app")).type // "dir"` */
  async stat(path: string): Promise<FileInfo> {
    return await this.#sb._engine().files.stat(checkPath(path));
  }
  /** Whether a path exists. @example `await sb.files.exists("/app/main.py")` */
  async exists(path: string): Promise<boolean> {
    try {
      await this.stat(path);
      return true;
    } catch (e) {
      if (e instanceof NotFoundError) return false;
      throw e;
    }
  }
  /**
   * Creates a directory and returns its metadata with the audit id. Like
   * `mkdir -p`: missing parents are made and a directory already there is no
   * error; `{ parents: false }` is the strict form (the parent must exist, the
   * path must not). Something that is not a directory at the path is a
   * `ConflictError` either way.
   *
   * @example `await sb.files.mkdir("/app/a/b")`
   */
  async mkdir(path: string, options: { parents?: boolean; mode?: number } = {}): Promise<WrittenFile> {
    const mode = options.mode ?? 0o755;
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) throw invalid("mode", "must be a mode between 0 and 0o7777");
    return await this.#sb._engine().files.mkdir(checkPath(path), { parents: options.parents ?? true, mode });
  }
  /** Removes a file or (with `recursive`) a tree; returns the audit id. @example `await sb.files.remove("/app", { recursive: true })` */
  async remove(path: string, options: { recursive?: boolean } = {}): Promise<string> {
    return await this.#sb._engine().files.remove(checkMovablePath(path, "path", "removed"), { recursive: options.recursive ?? false });
  }
  /**
   * Unpacks a tar stream into `dir` (made if missing) inside the sandbox: a
   * whole project in one stream. Extraction runs in the jail, so entries such
   * as `../x` or absolute links can only land in the sandbox's own view.
   *
   * @example `await sb.files.writeTar("/app", (await Deno.open("proj.tar")).readable)`
   */
  async writeTar(dir: string, tar: ReadableStream<Uint8Array>): Promise<string> {
    return await this.#sb._engine().files.writeTar(checkPath(dir, "dir"), toStream(tar, "tar"));
  }
  /** Packs `dir` into a tar stream (paths relative to it). @example `await (await sb.files.readTar("/app")).pipeTo(file.writable)` */
  async readTar(dir: string, options: { signal?: AbortSignal | undefined } = {}): Promise<ReadableStream<Uint8Array>> {
    checkPath(dir, "dir");
    const signal = checkSignal(options.signal);
    signal?.throwIfAborted();
    return await abortable(this.#sb._engine().files.readTar(dir, signal), signal);
  }
  /**
   * Sets the mode of a path (a symlink's target's, as `chmod` does); returns its
   * metadata with the audit id. A read-only path is a `PermissionDeniedError`.
   *
   * @example `await sb.files.chmod("/app/run.sh", 0o755)`
   */
  async chmod(path: string, mode: number): Promise<WrittenFile> {
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) throw invalid("mode", "must be a mode between 0 and 0o7777");
    return await this.#verb("chmod")(checkPath(path), mode);
  }
  /**
   * Copies a file, or a folder with `{ recursive: true }`, inside the sandbox;
   * symlinks inside are copied as symlinks, modes and times kept. Something
   * already at `to` is a `ConflictError` unless `{ overwrite: true }` (a folder
   * there never is replaced). Returns the copy's metadata with the audit id.
   *
   * @example `await sb.files.copy("/app/src", "/app/src.bak", { recursive: true })`
   */
  async copy(from: string, to: string, options: { recursive?: boolean; overwrite?: boolean } = {}): Promise<WrittenFile> {
    const opts = { recursive: options.recursive === true, overwrite: options.overwrite === true };
    return await this.#verb("copy")(checkPath(from, "from"), checkMovablePath(to, "to", "replaced"), opts);
  }
  /**
   * Makes a symlink at `path` pointing at `target` (stored as given, not
   * resolved; relative targets are relative to the link's folder). Something
   * already at `path` is a `ConflictError`. Returns the link's metadata with the
   * audit id.
   *
   * @example `await sb.files.symlink("main.py", "/app/entry.py")`
   */
  async symlink(target: string, path: string): Promise<WrittenFile> {
    return await this.#verb("symlink")(checkPath(target, "target"), checkPath(path));
  }
  /**
   * The canonical absolute path of `path` in the sandbox, every symlink
   * resolved; a path (or link target) that does not exist is a `NotFoundError`.
   *
   * @example `await sb.files.realpath("/app/entry.py") // "/app/main.py"`
   */
  async realpath(path: string): Promise<string> {
    return await this.#verb("realpath")(checkPath(path));
  }
  /**
   * Copies a host file or folder into the sandbox: a folder's contents land in
   * `sandboxDir` (made if missing), in one tar stream; a file lands there under its own name.
   * Host symlinks inside a folder become symlinks (never followed), special
   * files are skipped (listed in `skipped`); sandbox files at the same paths
   * are replaced. `onProgress({ bytes, files })` reports a long transfer.
   *
   * @example `const r = await sb.files.upload("./src", "/app/src", { onProgress: (p) => console.log(p.bytes) })`
   */
  async upload(hostPath: string, sandboxDir: string, options: TransferOptions = {}): Promise<TransferResult> {
    checkPath(hostPath, "hostPath");
    checkPath(sandboxDir, "sandboxDir");
    checkSignal(options.signal, "options.signal")?.throwIfAborted();
    return await upload(this.#transferFiles(options.signal), hostPath, sandboxDir, options);
  }
  /**
   * Copies a sandbox file or folder to the host: a folder's contents land in
   * `hostDir` (made if missing), a file lands there under its own name.
   * Everything in a sandbox is the guest's: a sandbox symlink is never
   * followed, and is written on the host only when its target stays inside
   * the download (relative, no `..`), else skipped and listed in `skipped`
   * with special files; every file is created new, and a host file (or
   * symlink) already at a path is a `ConflictError` unless
   * `{ overwrite: true }`.
   *
   * @example `const r = await sb.files.download("/app/out", "./out"); r.skipped // [{ path, reason }]`
   */
  async download(sandboxPath: string, hostDir: string, options: TransferOptions = {}): Promise<TransferResult> {
    checkPath(sandboxPath, "sandboxPath");
    checkPath(hostDir, "hostDir");
    checkSignal(options.signal, "options.signal")?.throwIfAborted();
    return await download(this.#transferFiles(options.signal), sandboxPath, hostDir, options);
  }
  /** The file verbs a transfer uses, each cut off by `signal` (streams as in `readStream`). */
  #transferFiles(signal?: AbortSignal) {
    const bound = <T>(p: Promise<T>) => untilAborted(p, signal);
    return {
      write: (path: string, data: ReadableStream<Uint8Array>, o: { mode: number; createParents: boolean }) =>
        bound(this.#writeOne(path, data, o, signal)),
      readStream: (path: string) => this.readStream(path, { signal }),
      list: (path: string) => bound(this.list(path)),
      stat: (path: string) => bound(this.stat(path)),
      mkdir: (path: string, o: { parents: boolean; mode: number }) => bound(this.mkdir(path, o)),
      remove: (path: string) => bound(this.remove(path)),
      symlink: (target: string, path: string) => bound(this.symlink(target, path)),
      readlink: (path: string) => bound(this.#verb("readlink")(checkPath(path))),
      writeTar: (dir: string, tar: ReadableStream<Uint8Array>) =>
        bound(this.#sb._engine().files.writeTar(checkPath(dir, "dir"), toStream(tar, "tar"), signal)),
      readTar: (dir: string) => this.readTar(dir, { signal }),
    };
  }
  /** An optional verb of the engine, or UNSUPPORTED naming it. */
  #verb<K extends "chmod" | "copy" | "symlink" | "realpath" | "readlink">(name: K): NonNullable<EngineFiles[K]> {
    const files = this.#sb._engine().files;
    const fn = files[name];
    if (!fn) throw new UnsupportedError(`files.${name} is not offered by the ${this.#sb.engine} engine`, { details: { op: name } });
    return fn.bind(files) as NonNullable<EngineFiles[K]>;
  }
  /**
   * Renames (moves) a path, replacing what was at `to`; returns the metadata
   * of the path under its new name, with the audit id.
   *
   * @example `const moved = await sb.files.rename("/app/a.txt", "/app/b.txt") // moved.path === "/app/b.txt"`
   */
  async rename(from: string, to: string): Promise<WrittenFile> {
    return await this.#sb._engine().files.rename(checkMovablePath(from, "from", "renamed"), checkMovablePath(to, "to", "replaced"));
  }
}
