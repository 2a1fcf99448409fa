/**
 * File names are bytes; JavaScript strings are UTF-16. Names that are valid UTF-8 are plain
 * strings; each byte of a name that is not valid UTF-8 becomes the lone surrogate U+DC00+byte (as
 * Python's `surrogateescape` does), and such a string encodes back to the same bytes. So every name
 * `files.list` returns can be passed back to `read`, `remove` or `rename` as it is.
 *
 * @example Round trip of a name that is not UTF-8
 * ```ts
 * import { decodeName, encodeName } from "./filenames.ts";
 * const name = decodeName(new Uint8Array([0x61, 0xff]));
 * console.log(name === "a\udcff", encodeName(name)); // true Uint8Array [0x61, 0xff]
 * ```
 * @module
 */

const strict = new TextDecoder("utf-8", { fatal: true });
const utf8 = new TextEncoder();

/** Bytes → string, invalid bytes as U+DC00+byte. @example `decodeName(new Uint8Array([0xff])) // "\udcff"` */
export function decodeName(bytes: Uint8Array): string {
  try {
    return strict.decode(bytes);
  } catch { /* not UTF-8: escape byte by byte */ }
  let out = "";
  for (let i = 0; i < bytes.length;) {
    const n = seqLength(bytes, i);
    if (n > 0) {
      out += strict.decode(bytes.subarray(i, i + n));
      i += n;
    } else {
      out += String.fromCharCode(0xdc00 + bytes[i]!);
      i++;
    }
  }
  return out;
}

/** Length of the valid UTF-8 sequence at `i`, or 0. */
function seqLength(b: Uint8Array, i: number): number {
  const c = b[i]!;
  const n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
  if (n === 0 || i + n > b.length) return 0;
  for (let k = 1; k < n; k++) if ((b[i + k]! & 0xc0) !== 0x80) return 0;
  try {
    strict.decode(b.subarray(i, i + n)); // overlong forms and surrogates
    return n;
  } catch {
    return 0;
  }
}

/** String → bytes, U+DC80..U+DCFF back to the byte they stand for. @example `encodeName("a\udcff")` */
export function encodeName(s: string): Uint8Array {
  if (!/[\udc80-\udcff]/.test(s)) return utf8.encode(s);
  const parts: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const lone = c >= 0xdc80 && c <= 0xdcff && !(i > 0 && s.charCodeAt(i - 1) >= 0xd800 && s.charCodeAt(i - 1) <= 0xdbff);
    if (lone) parts.push(c - 0xdc00);
    else {
      const cp = s.codePointAt(i)!;
      const ch = String.fromCodePoint(cp);
      parts.push(...utf8.encode(ch));
      if (cp > 0xffff) i++;
    }
  }
  return new Uint8Array(parts);
}
