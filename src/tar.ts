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
