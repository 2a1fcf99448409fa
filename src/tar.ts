/**
 * A tar (ustar + pax) writer for host folders, streamed: what `files.upload` sends to the sandbox's
 * `tar -x` in one stream instead of two agent calls per file. Regular files, folders and symlinks;
 * long or non-ASCII names and sizes past ustar's 8 GiB go in pax records.
 *
 * @example One header
 * ```ts
 * import assert from "node:assert/strict";
 * import { tarHeader } from "./tar.ts";
 * const h = tarHeader({ name: "a.txt", type: "file", size: 3, mode: 0o644, mtime: 0 });
 * assert.equal(h.length, 512);
 * ```
 * @module
 */

/** One entry's header fields. */
export interface TarEntry {
  name: string;
  type: "file" | "dir" | "symlink";
  size: number;
  mode: number;
  /** Seconds since the epoch. */
  mtime: number;
  linkname?: string;
}

const enc = new TextEncoder();

function octal(buf: Uint8Array, at: number, len: number, n: number): void {
  buf.set(enc.encode(n.toString(8).padStart(len - 1, "0").slice(-(len - 1)) + "\0"), at);
}

function block(name: Uint8Array, type: string, size: number, mode: number, mtime: number, link: Uint8Array): Uint8Array {
  const h = new Uint8Array(512);
  h.set(name.subarray(0, 100), 0);
  octal(h, 100, 8, mode & 0o7777);
  octal(h, 108, 8, 0);
  octal(h, 116, 8, 0);
  octal(h, 124, 12, size);
  octal(h, 136, 12, Math.max(0, Math.floor(mtime)));
  h.fill(0x20, 148, 156);
  h[156] = type.charCodeAt(0);
  h.set(link.subarray(0, 100), 157);
  h.set(enc.encode("ustar\u000000"), 257);
  let sum = 0;
  for (const b of h) sum += b;
  h.set(enc.encode(sum.toString(8).padStart(6, "0") + "\0 "), 148);
  return h;
}

/** A pax record `"<len> key=value\n"`, whose length counts its own digits. */
function paxRecord(key: string, value: string): Uint8Array {
  const body = enc.encode(` ${key}=${value}\n`);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return enc.encode(`${len}${new TextDecoder().decode(body)}`);
}

const ASCII = /^[\x20-\x7e]*$/;

/**
 * The header block(s) of an entry: a pax header first when the name or link is long or not ASCII,
 * or the size does not fit ustar's 11 octal digits. @example `tarHeader({ name: "d", type: "dir", size: 0, mode: 0o755, mtime: 0 })`
 */
export function tarHeader(e: TarEntry): Uint8Array {
  const name = e.type === "dir" && !e.name.endsWith("/") ? `${e.name}/` : e.name;
  const link = e.linkname ?? "";
  const size = e.type === "file" ? e.size : 0;
  const recs: Uint8Array[] = [];
  if (enc.encode(name).length > 100 || !ASCII.test(name)) recs.push(paxRecord("path", name));
  if (enc.encode(link).length > 100 || !ASCII.test(link)) recs.push(paxRecord("linkpath", link));
  if (size > 0o77777777777) recs.push(paxRecord("size", String(size)));
  const main = block(
    enc.encode(name),
    e.type === "file" ? "0" : e.type === "dir" ? "5" : "2",
    size > 0o77777777777 ? 0 : size,
    e.mode,
    e.mtime,
    enc.encode(link),
  );
  if (recs.length === 0) return main;
  const data = concat(recs);
  return concat([
    block(enc.encode("PaxHeader"), "x", data.length, 0o644, e.mtime, new Uint8Array()),
    data,
    new Uint8Array(pad(data.length)),
    main,
  ]);
}

/** Zero bytes after `n` bytes of content up to the next 512-byte block. @example `pad(3) // 509` */
export function pad(n: number): number {
  return (512 - (n % 512)) % 512;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The end of an archive: two zero blocks. */
export const TAR_END: Uint8Array = new Uint8Array(1024);

/**
 * One entry read from a tar stream. `path` and `linkname` are the archive's bytes decoded as file
 * names are everywhere in the SDK (valid UTF-8 as it is, each other byte as U+DC00+byte), and are
 * untrusted: the reader only parses, the caller decides what a name may do.
 */
export interface TarReadEntry {
  path: string;
  /** `other` for fifos, devices and anything else; `typeflag` says which. */
  type: "file" | "dir" | "symlink" | "hardlink" | "other";
  typeflag: string;
  mode: number;
  size: number;
  linkname: string;
  /** The content (files only), streamed; what is not read is skipped when the next entry is asked for. */
  body(): AsyncGenerator<Uint8Array>;
}

/** A tar stream that is not one: a header whose checksum does not match, a cut-off entry, a record too big. */
export class TarFormatError extends Error {}

/** Most a pax or GNU long-name record may take (they are read into memory). */
const RECORD_MAX = 1 << 20;

/** Exact-length reads over a byte stream, without copying what passes through whole. */
class ByteQueue {
  #chunks: Uint8Array[] = [];
  #have = 0;
  #done = false;
  /** Bytes taken so far (for messages). */
  offset = 0;
  constructor(readonly reader: ReadableStreamDefaultReader<Uint8Array>) {}
  async #fill(n: number): Promise<boolean> {
    while (this.#have < n && !this.#done) {
      const r = await this.reader.read();
      if (r.done) this.#done = true;
      else if (r.value.length) {
        this.#chunks.push(r.value);
        this.#have += r.value.length;
      }
    }
    return this.#have >= n;
  }
  /** Up to `max` bytes as they come (at least one), or null at the end of the stream. */
  async some(max: number): Promise<Uint8Array | null> {
    if (!(await this.#fill(1))) return null;
    const first = this.#chunks[0]!;
    const out = first.length <= max ? first : first.subarray(0, max);
    if (out === first) this.#chunks.shift();
    else this.#chunks[0] = first.subarray(max);
    this.#have -= out.length;
    this.offset += out.length;
    return out;
  }
  /** Exactly `n` bytes, or null when the stream ends first. */
  async exact(n: number): Promise<Uint8Array | null> {
    if (!(await this.#fill(n))) return null;
    const out = new Uint8Array(n);
    for (let at = 0; at < n;) {
      const c = await this.some(n - at);
      out.set(c!, at);
      at += c!.length;
    }
    return out;
  }
}

const latin = new TextDecoder("latin1");

/** A NUL-terminated header field's bytes. */
function field(h: Uint8Array, at: number, len: number): Uint8Array {
  const f = h.subarray(at, at + len);
  const end = f.indexOf(0);
  return end < 0 ? f : f.subarray(0, end);
}

/** A numeric header field: octal digits (ustar), or base-256 when its first byte has the high bit (GNU). */
function number(h: Uint8Array, at: number, len: number): number {
  const f = h.subarray(at, at + len);
  if (f[0]! & 0x80) {
    if (f[0] === 0xff) throw new TarFormatError("a negative number in a tar header");
    let n = f[0]! & 0x7f;
    for (let i = 1; i < f.length; i++) {
      n = n * 256 + f[i]!;
      if (n > Number.MAX_SAFE_INTEGER) throw new TarFormatError("a number too big in a tar header");
    }
    return n;
  }
  const text = latin.decode(field(h, at, len)).trim();
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) throw new TarFormatError(`a tar header field that is not a number: ${JSON.stringify(text)}`);
  const n = parseInt(text, 8);
  if (!Number.isSafeInteger(n)) throw new TarFormatError("a number too big in a tar header");
  return n;
}

/** pax records (`"<len> key=value\n"`) as key → value bytes. */
function paxRecords(data: Uint8Array): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  for (let at = 0; at < data.length;) {
    const sp = data.indexOf(0x20, at);
    const len = sp < 0 ? NaN : Number(latin.decode(data.subarray(at, sp)));
    if (!Number.isSafeInteger(len) || len <= sp - at || at + len > data.length || data[at + len - 1] !== 0x0a) {
      throw new TarFormatError("a damaged pax record in the tar stream");
    }
    const rec = data.subarray(sp + 1, at + len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq < 0) throw new TarFormatError("a pax record without '='");
    out.set(latin.decode(rec.subarray(0, eq)), rec.subarray(eq + 1));
    at += len;
  }
  return out;
}

const TYPES: Record<string, TarReadEntry["type"]> = { "0": "file", "\0": "file", "7": "file", "5": "dir", "2": "symlink", "1": "hardlink" };

/**
 * Reads a tar stream (ustar, pax, GNU long names and base-256 sizes) entry by entry, with bounded
 * memory: content is streamed, pax and long-name records are capped at 1 MiB. Every header's checksum
 * is checked; a damaged or cut-off stream is a {@linkcode TarFormatError}. Stops at the end-of-archive
 * block, reads on to the stream's end (at most 1 MiB more: an error the producer reports there is thrown) and
 * cancels what is left. `decode` turns name bytes into a string.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readTarEntries, TAR_END, tarHeader } from "./tar.ts";
 * const bytes = new Uint8Array([...tarHeader({ name: "d", type: "dir", size: 0, mode: 0o755, mtime: 0 }), ...TAR_END]);
 * const names: string[] = [];
 * for await (const e of readTarEntries(new Blob([bytes]).stream(), (b) => new TextDecoder().decode(b))) names.push(`${e.type} ${e.path}`);
 * assert.deepEqual(names, ["dir d/"]);
 * ```
 */
export async function* readTarEntries(
  stream: ReadableStream<Uint8Array>,
  decode: (bytes: Uint8Array) => string,
): AsyncGenerator<TarReadEntry> {
  const reader = stream.getReader();
  const q = new ByteQueue(reader);
  try {
    let longName: Uint8Array | null = null;
    let longLink: Uint8Array | null = null;
    let pax = new Map<string, Uint8Array>();
    for (;;) {
      const at = q.offset;
      const h = await q.exact(512);
      if (!h) throw new TarFormatError(`the tar stream ends at byte ${at} without its end-of-archive block`);
      if (h.every((b) => b === 0)) {
        // the producer's own end (its exit status: a tar that could not read an entry fails there) comes after
        // its padding: read on to the end, a bounded amount
        for (let extra = 0; extra <= RECORD_MAX;) {
          const c = await q.some(65536);
          if (!c) return;
          extra += c.length;
        }
        return;
      }
      let sum = 0;
      for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
      if (number(h, 148, 8) !== sum) throw new TarFormatError(`a tar header at byte ${at} whose checksum does not match`);
      const typeflag = String.fromCharCode(h[156]!);
      let size = number(h, 124, 12);
      const paxSize = pax.get("size");
      if (paxSize) {
        const text = latin.decode(paxSize);
        size = /^\d{1,16}$/.test(text) ? Number(text) : NaN;
        if (!Number.isSafeInteger(size)) throw new TarFormatError("a pax size that is not a number");
      }
      const padded = size + pad(size);
      if (typeflag === "x" || typeflag === "g" || typeflag === "L" || typeflag === "K") {
        if (size > RECORD_MAX) throw new TarFormatError(`a tar ${typeflag} record of ${size} bytes (at most ${RECORD_MAX})`);
        const data = await q.exact(padded);
        if (!data) throw new TarFormatError("the tar stream ends inside a record");
        const body = data.subarray(0, size);
        if (typeflag === "x") pax = paxRecords(body);
        else if (typeflag === "L") longName = field(body, 0, body.length);
        else if (typeflag === "K") longLink = field(body, 0, body.length);
        continue;
      }
      const ustar = latin.decode(h.subarray(257, 263)) === "ustar\0";
      const prefix = ustar ? field(h, 345, 155) : new Uint8Array();
      const name = pax.get("path") ?? longName ??
        (prefix.length ? new Uint8Array([...prefix, 0x2f, ...field(h, 0, 100)]) : field(h, 0, 100));
      const link = pax.get("linkpath") ?? longLink ?? field(h, 157, 100);
      pax = new Map();
      longName = longLink = null;
      const type = TYPES[typeflag] ?? "other";
      let left = type === "file" ? size : 0;
      let skip = type === "file" ? padded - size : padded;
      const entry: TarReadEntry = {
        path: decode(name),
        type,
        typeflag,
        mode: number(h, 100, 8) & 0o7777,
        size,
        linkname: decode(link),
        async *body() {
          while (left > 0) {
            const c = await q.some(left);
            if (!c) throw new TarFormatError(`the tar stream ends inside ${JSON.stringify(entry.path)}`);
            left -= c.length;
            yield c;
          }
        },
      };
      yield entry;
      skip += left;
      left = 0;
      while (skip > 0) {
        const c = await q.some(skip);
        if (!c) throw new TarFormatError(`the tar stream ends inside ${JSON.stringify(entry.path)}`);
        skip -= c.length;
      }
    }
  } finally {
    // the rest (padding, or anything a hostile producer sends after the end) is not read
    await reader.cancel().catch(() => {});
  }
}
