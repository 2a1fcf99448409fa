/**
 * Redaction of secret values: the one place that knows what a value looks like once it went
 * through an encoding. Every secret this process resolves is registered here, and the SDK passes
 * its errors, log events, audit entries and state files through {@linkcode redact} before they
 * leave it, so none of them carries a value — exact, base64 (standard or URL-safe, at any of the
 * three alignments inside longer base64), URL-encoded or JSON-escaped.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { redact, REDACTED } from "./redact.ts";
 *
 * const value = "sk-live-0123456789";
 * assert.equal(redact(`token=${value}`, [value]), `token=${REDACTED}`);
 * assert.equal(redact(`Basic ${btoa("me:" + value)}`, [value]).includes(value), false);
 * ```
 * @module
 */

/** What a value is replaced with. */
export const REDACTED = "[REDACTED]";

const known = new Set<string>();
let forms: string[] = [];

function b64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

/**
 * Every form `value` may take in text: itself, its URL and JSON escapes, and the base64
 * characters that only it determines at each of the three alignments (standard and URL-safe),
 * longest first. Forms shorter than 6 characters are left out (they would match ordinary text).
 * @example `secretForms("sk-live-0123456789").includes("c2stbGl2ZS0wMTIzNDU2Nzg5") // true`
 */
export function secretForms(value: string): string[] {
  const out = new Set<string>([value]);
  const bytes = new TextEncoder().encode(value);
  for (let k = 0; k < 3; k++) {
    const padded = new Uint8Array(k + bytes.length);
    padded.set(bytes, k);
    const enc = b64(padded);
    const part = enc.slice(Math.ceil((k * 4) / 3), Math.floor(((k + bytes.length) * 4) / 3));
    out.add(part);
    out.add(part.replaceAll("+", "-").replaceAll("/", "_"));
    if (k === 0) out.add(enc);
  }
  const url = encodeURIComponent(value);
  out.add(url);
  out.add(url.replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase()));
  out.add(url.replaceAll("%20", "+"));
  out.add(JSON.stringify(value).slice(1, -1));
  return [...out].filter((f) => f.length >= 6).sort((a, b) => b.length - a.length);
}

/**
 * Registers a secret value of this process: from now on {@linkcode redact} without a list removes
 * it. @example `registerSecret(value)`
 */
export function registerSecret(value: string): void {
  if (known.has(value)) return;
  known.add(value);
  forms = [...new Set([...forms, ...secretForms(value)])].sort((a, b) => b.length - a.length);
}

/**
 * `text` with every form of every secret (the registered ones, or `values`) replaced by
 * {@linkcode REDACTED}. @example `redact(message)`
 */
export function redact(text: string, values?: Iterable<string>): string {
  const list = values === undefined ? forms : [...values].flatMap(secretForms).sort((a, b) => b.length - a.length);
  if (list.length === 0 || typeof text !== "string") return text;
  for (const f of list) if (text.includes(f)) text = text.split(f).join(REDACTED);
  return text;
}

/**
 * A JSON-shaped value with every string in it redacted (plain objects and arrays are copied; other
 * objects are left as they are).
 * @example `redactJson({ tags: { t: value } })`
 */
export function redactJson<T>(value: T): T {
  if (forms.length === 0) return value;
  const walk = (v: unknown): unknown => {
    if (typeof v === "string") return redact(v);
    if (Array.isArray(v)) return v.map(walk);
    const proto = v !== null && typeof v === "object" ? Object.getPrototypeOf(v) : undefined;
    if (proto === Object.prototype || proto === null) {
      return Object.fromEntries(Object.entries(v as object).map(([k, x]) => [redact(k), walk(x)]));
    }
    return v;
  };
  return walk(value) as T;
}

/** Whether any secret is registered in this process. @example `if (hasSecrets()) …` */
export function hasSecrets(): boolean {
  return forms.length > 0;
}
