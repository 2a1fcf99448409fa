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
import { invalid, NotFoundError } from "./errors.ts";
import type { WrittenFile } from "./engines/contract.ts";
import { collectBytes, toStream } from "./streams.ts";
import type { FileInfo } from "./types.ts";
import { checkMovablePath, checkPath } from "./validate.ts";
import type { Sandbox } from "./sandbox.ts";

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
  /** Reads a whole file. @example `const bytes = await sb.files.read("/etc/hostname")` */
  async read(path: string): Promise<Uint8Array> {
    return await collectBytes(await this.readStream(path));
  }
  /** Reads a whole file as UTF-8. @example `await sb.files.readText("/app/out.txt")` */
  async readText(path: string): Promise<string> {
    return new TextDecoder().decode(await this.read(path));
  }
  /** Streams a file, optionally a byte range. @example `const s = await sb.files.readStream("/big", { offset: 0, length: 1024 })` */
  async readStream(path: string, range: { offset?: number; length?: number } = {}): Promise<ReadableStream<Uint8Array>> {
    checkPath(path);
    if (range.offset !== undefined && (!Number.isSafeInteger(range.offset) || range.offset < 0)) {
      throw invalid("offset", "must be a whole number ≥ 0");
    }
    if (range.length !== undefined && (!Number.isSafeInteger(range.length) || range.length < 0)) {
      throw invalid("length", "must be a whole number ≥ 0");
    }
    return await this.#sb._engine().files.readStream(path, range);
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
  async #writeOne(path: string, data: FileData, options: WriteOptions): Promise<WrittenFile> {
    checkPath(path);
    const mode = options.mode ?? 0o644;
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) throw invalid("mode", "must be a file mode between 0 and 0o7777");
    if (options.resume) await this.#sb._resumeIfPaused();
    return await this.#sb._engine().files.write(path, toStream(data), { mode, createParents: options.createParents ?? true });
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
  async readTar(dir: string): Promise<ReadableStream<Uint8Array>> {
    return await this.#sb._engine().files.readTar(checkPath(dir, "dir"));
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
