/**
 * The audit chain: every operation that changes or reads sandbox state appends one signed line,
 * per state root, and the chain survives `destroy` (audit is not sandbox state). The format stays
 * close to upstream's: JSON lines `{"entry": {…}, "canonical": base64url(entry bytes), "prev_hash":
 * base64url, "signature": base64url}`, where `signature` is Ed25519 over the entry's bytes followed
 * by `prev_hash`, `prev_hash` is the SHA-256 of the previous line (without its newline) and the
 * first line's is 32 zero bytes. Segments (`chain-000001.jsonl`, …) rotate at a size limit (4 MiB)
 * with a signed hand-off: the old segment ends with `audit.rotated` naming the next, the next
 * starts with `audit.continued`, chained to it. A signed `head` names the last line, so a cut tail
 * is found too.
 *
 * Appends are synchronous and cheap (an Ed25519 signature is ~20-50 µs): no line is re-read, the
 * tail hash comes from `head` (checked against the segment's size, recomputed from the segment's
 * end when another process appended meanwhile). Concurrent appenders (several clients, detached
 * owners, on any runtime) take the one lock of `src/lock.ts`, so the chain never forks.
 *
 * A sandbox's supervisor (a shell on the host, with no key) records its own transitions — `started`,
 * `jail.restarted`, `destroyed` with the reason (TTL, owner exit …) — as one small file each in the
 * chain's `spool/` folder (0700, beside the key; no guest can reach it). Every SDK process moves
 * pending spool files into the chain, under the chain's lock, before its next append and when it
 * lists sandboxes, reads a sandbox's entries or verifies the chain; each becomes an entry with the
 * supervisor's event id and `labels.source: "supervisor"`. A file is checked before it is taken:
 * only the events a supervisor records, with a sandbox id, a timestamp and plain number or word
 * fields; anything else becomes an `audit.spool.rejected` entry naming the file, never its content.
 *
 * @example Verify a state root's chain
 * ```ts
 * import assert from "node:assert/strict";
 * import { Sandbox, verifyAudit } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * const r = await sb.commands.run(["true"]);
 * const report = await verifyAudit();
 * assert.equal(report.status, "VERIFIED");
 * const mine = await Array.fromAsync(sb.audit());
 * assert.ok(mine.some((e) => e.id === r.auditId && e.event === "process.exited"));
 * ```
 * @module
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, sign, verify } from "node:crypto";
import {
  appendFileSync,
  closeSync,
  constants,
  existsSync,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { InternalError, PermissionDeniedError } from "./errors.ts";
import { lock } from "./lock.ts";
import { redactJson } from "./redact.ts";

/** One audit entry: what happened, when, to which sandbox. Never a secret value. */
export interface AuditEntry {
  /**
   * The entry's id: the `auditId` a call returned (`aud_` and 20 hex digits), or, for what a
   * sandbox's supervisor recorded, its log event's id (`sup-<pid>-<ns>`).
   */
  id: string;
  /** Position in the state root's chain, from 0, across segments. */
  seq: number;
  /** When it was appended (ISO 8601). */
  timestamp: string;
  /** Whose chain: the local engine's state root tag. */
  tenant: string;
  /** What happened: `created`, `process.exited`, `files.read`, `paused`, `audit.rotated` … */
  event: string;
  /** `sandbox` (its id) and `source` (`sdk` or `supervisor`) when they apply. */
  labels: Record<string, string>;
  /** The event's fields (paths, exit codes, limits …). */
  data?: Record<string, unknown>;
}

/** The outcome of {@linkcode verifyAudit}. */
export interface AuditReport {
  /** `VERIFIED`: every line is intact and in order; `MISMATCH`: see `firstBad`; `NOT_FOUND`: no chain here. */
  status: "VERIFIED" | "MISMATCH" | "NOT_FOUND";
  /** Lines checked. */
  entries: number;
  /** Segments checked, oldest first. */
  files: string[];
  /** The first line that does not verify, and why. */
  firstBad?: { file: string; line: number; seq?: number; reason: string };
}

/** A segment rotates once it is this big (upstream's figure). */
export const AUDIT_ROTATE_BYTES = 4 * 1024 * 1024;
const GENESIS = new Uint8Array(32);
const SEGMENT_RE = /^chain-(\d{6})\.jsonl$/;
const HEAD_BYTES = 511;
/** A supervisor's spool file: `sup-<pid>-<ns>.ev`, one JSON line. */
const SPOOL_RE = /^sup-(\d{1,10})-(\d{1,20})\.ev$/;
/** The events a supervisor records (anything else in the spool is rejected). */
const SPOOL_EVENTS = new Set(["started", "jail.restarted", "destroyed"]);
/** A spool file still without its newline is being written, unless it is older than this. */
const SPOOL_TORN_MS = 60_000;

const b64u = (b: Uint8Array) => btoa(String.fromCharCode(...b)).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
function unb64u(s: string): Uint8Array {
  const bin = atob(s.replaceAll("-", "+").replaceAll("_", "/"));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}
const sha256 = (b: Uint8Array | string) => new Uint8Array(createHash("sha256").update(b).digest());
const segmentName = (n: number) => `chain-${String(n).padStart(6, "0")}.jsonl`;
const enc = new TextEncoder();
const dec = new TextDecoder();

/** A fresh audit id. @example `newAuditId() // "aud_1f3c…"` */
export function newAuditId(): string {
  return `aud_${crypto.randomUUID().replaceAll("-", "").slice(0, 20)}`;
}

/** The signed line for an entry after `prev` (the previous line's SHA-256, or genesis). */
function makeLine(key: KeyObject, raw: AuditEntry, prev: Uint8Array): string {
  const entry = redactJson(raw); // never a secret value in the chain, whatever a caller passed
  const bytes = enc.encode(JSON.stringify(entry));
  const sig = sign(null, concat(bytes, prev), key);
  return JSON.stringify({ entry, canonical: b64u(bytes), prev_hash: b64u(prev), signature: b64u(new Uint8Array(sig)) });
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** What `head` holds: the last line's segment, the segment's size after it, its seq and hash. */
interface Head {
  file: string;
  size: number;
  seq: number;
  hash: string;
}

/**
 * One state root's audit chain (`<state>/audit/`). Made by the engine; callers use
 * {@linkcode verifyAudit} and `sb.audit()`.
 *
 * @example `new AuditLog("/var/lib/mvm/audit", "r0123456789").append("created", {}, { sandbox: id })`
 */
export class AuditLog {
  #key: KeyObject | undefined;
  #head: Head | undefined;
  #headFd: number | undefined;
  #spoolMade = false;
  #spoolSeen = -1;
  /** `spoolDir`: where supervisors leave their events for {@linkcode AuditLog.ingest} (none: no spool). */
  constructor(
    readonly dir: string,
    readonly tenant: string,
    readonly rotateBytes: number = AUDIT_ROTATE_BYTES,
    readonly spoolDir?: string,
  ) {}

  /** Appends one signed entry and returns its id (`id` when given: the id of the log event it mirrors). */
  append(event: string, data: Record<string, unknown> = {}, labels: Record<string, string> = {}, id: string = newAuditId()): string {
    this.#ensureDir();
    const release = lock(this.dir);
    try {
      const key = this.#privateKey();
      // what supervisors recorded meanwhile goes first: the chain keeps the order things happened in
      if (this.#spoolPending()) this.#ingest(key);
      return this.#appendLocked(key, event, data, labels, id);
    } finally {
      release();
    }
  }

  /**
   * The spool folder supervisors write their events to, made on first call (0700, owned like the
   * chain; one that is not is refused). @example `log.spool() // "/var/lib/mvm/audit/spool"`
   */
  spool(): string {
    if (!this.spoolDir) throw new InternalError(`the audit chain ${this.dir} has no spool`);
    if (this.#spoolMade) return this.spoolDir;
    this.#ensureDir();
    mkdirSync(this.spoolDir, { recursive: true, mode: 0o700 });
    const st = lstatSync(this.spoolDir);
    const uid = statSync(this.dir).uid;
    if (!st.isDirectory() || (st.mode & 0o077) !== 0 || st.uid !== uid) {
      throw new PermissionDeniedError(
        `refusing the audit spool ${this.spoolDir}: it must be a folder of uid ${uid} that nobody else can read or write (mode 0700); ` +
          `it is mode ${(st.mode & 0o777).toString(8)}, uid ${st.uid}`,
        { details: { path: this.spoolDir } },
      );
    }
    this.#spoolMade = true;
    return this.spoolDir;
  }

  /**
   * Moves the events supervisors left in the spool into the chain (under the chain's lock, oldest
   * first) and returns how many files it took. Cheap when nothing is pending (one `stat`).
   *
   * @example `auditLog(root).ingest()`
   */
  ingest(): number {
    if (!this.#spoolPending()) return 0;
    this.#ensureDir();
    const release = lock(this.dir);
    try {
      return this.#ingest(this.#privateKey());
    } finally {
      release();
    }
  }

  /** Whether the spool may hold something: its folder changed since it was last seen empty. */
  #spoolPending(): boolean {
    if (!this.spoolDir) return false;
    try {
      return statSync(this.spoolDir).mtimeMs !== this.#spoolSeen;
    } catch {
      return false;
    }
  }

  /** Takes every complete spool file into the chain (the lock is held). */
  #ingest(key: KeyObject): number {
    const spool = this.spoolDir!;
    let taken = 0;
    for (;;) {
      let mtime: number;
      let names: string[];
      try {
        mtime = statSync(spool).mtimeMs;
        names = readdirSync(spool).filter((f) => SPOOL_RE.test(f));
      } catch {
        return taken;
      }
      if (names.length === 0) {
        // trusted as "empty" only once the folder's time is old enough that a later change must move it
        // (the kernel's file times are coarse: two changes in one tick can share one)
        if (Date.now() - mtime > 100) this.#spoolSeen = mtime;
        return taken;
      }
      const order = (f: string) => SPOOL_RE.exec(f)![2]!.padStart(20, "0") + f;
      let progress = false;
      for (const name of names.sort((a, b) => order(a) < order(b) ? -1 : 1)) {
        const got = readSpoolFile(`${spool}/${name}`, statSync(this.dir).uid);
        if (got === null) continue; // still being written
        if (typeof got === "string") {
          this.#appendLocked(key, "audit.spool.rejected", { file: name, reason: got }, { source: "supervisor" }, newAuditId());
        } else {
          this.#appendLocked(key, got.event, got.data, got.labels, got.id);
        }
        try {
          unlinkSync(`${spool}/${name}`);
        } catch { /* gone already */ }
        taken++;
        progress = true;
      }
      if (!progress) return taken;
    }
  }

  /** Appends one signed entry with the lock held. */
  #appendLocked(key: KeyObject, event: string, data: Record<string, unknown>, labels: Record<string, string>, id: string): string {
    let head = this.#currentHead();
    const entry = (seq: number): AuditEntry => ({
      id,
      seq,
      timestamp: new Date().toISOString(),
      tenant: this.tenant,
      event,
      labels,
      ...(Object.keys(data).length ? { data } : {}),
    });
    let line = makeLine(key, entry(head.seq + 1), unb64u(head.hash));
    if (head.size > 0 && head.size + line.length + 1 > this.rotateBytes) {
      head = this.#rotate(key, head);
      line = makeLine(key, entry(head.seq + 1), unb64u(head.hash));
    }
    this.#write(head.file, line, head);
    return id;
  }

  /** Writes a line to a segment and moves `head` past it. */
  #write(file: string, line: string, head: Head): void {
    const bytes = enc.encode(line + "\n");
    appendFileSync(`${this.dir}/${file}`, bytes, { mode: 0o600 });
    const seq = head.seq + 1;
    const next: Head = { file, size: head.size + bytes.length, seq, hash: b64u(sha256(line)) };
    const body = JSON.stringify(next);
    const sig = b64u(new Uint8Array(sign(null, enc.encode(body), this.#privateKey())));
    // written in place, padded to a fixed size (no truncate, no rename: those cost a metadata update each)
    const rec = enc.encode(JSON.stringify({ head: next, signature: sig }).padEnd(HEAD_BYTES, " ") + "\n");
    this.#headFd ??= openSync(`${this.dir}/head`, constants.O_RDWR | constants.O_CREAT, 0o600);
    writeSync(this.#headFd, rec, 0, rec.length, 0);
    this.#head = next;
  }

  /** The signed hand-off: `audit.rotated` ends the full segment, `audit.continued` starts the next. */
  #rotate(key: KeyObject, head: Head): Head {
    const n = Number(SEGMENT_RE.exec(head.file)![1]) + 1;
    const next = segmentName(n);
    const e = (seq: number, event: string, data: Record<string, unknown>): AuditEntry => ({
      id: newAuditId(),
      seq,
      timestamp: new Date().toISOString(),
      tenant: this.tenant,
      event,
      labels: {},
      data,
    });
    this.#write(head.file, makeLine(key, e(head.seq + 1, "audit.rotated", { next }), unb64u(head.hash)), head);
    const h = this.#head!;
    const fresh: Head = { file: next, size: 0, seq: h.seq, hash: h.hash };
    this.#write(next, makeLine(key, e(h.seq + 1, "audit.continued", { previous: head.file }), unb64u(h.hash)), fresh);
    return this.#head!;
  }

  /** The chain's last line as it is on disk: the cached or stored head when the segment's size agrees, else read from its end. */
  #currentHead(): Head {
    const segs = segments(this.dir);
    const file = segs.at(-1) ?? segmentName(1);
    let size = 0;
    try {
      size = statSync(`${this.dir}/${file}`).size;
    } catch { /* a new chain */ }
    if (size === 0 && segs.length <= 1) return { file, size: 0, seq: -1, hash: b64u(GENESIS) };
    const ok = (h: Head | undefined) => h && h.file === file && h.size === size;
    if (ok(this.#head)) return this.#head!;
    try {
      const stored = JSON.parse(readFileSync(`${this.dir}/head`, "utf8").trim()).head as Head;
      if (ok(stored)) return this.#head = stored;
    } catch { /* missing or torn: read the segment's end */ }
    const last = lastLine(`${this.dir}/${file}`);
    if (last === null) throw new InternalError(`the audit segment ${this.dir}/${file} has no complete line to chain to`);
    const seq = (JSON.parse(last) as { entry: AuditEntry }).entry.seq;
    return this.#head = { file, size, seq, hash: b64u(sha256(last)) };
  }

  #ensureDir(): void {
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw new PermissionDeniedError(`cannot create the audit folder ${this.dir}: ${(e as Error).message}`, { cause: e });
    }
  }

  /** The chain's signing key, made on first use (0600); a key others could read or replace is refused. */
  #privateKey(): KeyObject {
    if (this.#key) return this.#key;
    const path = `${this.dir}/key`;
    try {
      writeFileSync(path, generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }) as string, {
        mode: 0o600,
        flag: "wx",
      });
    } catch (e) {
      if ((e as { code?: string }).code !== "EEXIST") throw e;
    }
    const st = lstatSync(path);
    const uid = statSync(this.dir).uid;
    if (!st.isFile() || (st.mode & 0o077) !== 0 || st.uid !== uid) {
      throw new PermissionDeniedError(
        `refusing the audit key ${path}: it must be a file of uid ${uid} that nobody else can read or write (mode 0600); it is mode ${
          (st.mode & 0o777).toString(8)
        }, uid ${st.uid}`,
        { details: { path } },
      );
    }
    this.#key = createPrivateKey(readFileSync(path, "utf8"));
    const pub = createPublicKey(this.#key).export({ format: "pem", type: "spki" }) as string;
    try {
      if (readFileSync(`${this.dir}/key.pub`, "utf8") === pub) return this.#key;
    } catch { /* written below */ }
    writeFileSync(`${this.dir}/key.pub`, pub, { mode: 0o600 });
    return this.#key;
  }
}

/**
 * One spool file as an entry, a reason to reject it, or null while it is being written (no newline
 * yet, and young). It must be a regular file of `uid` (never followed as a link), small, one JSON
 * object of an event a supervisor records, whose fields are plain numbers or words.
 */
function readSpoolFile(
  path: string,
  uid: number,
): { id: string; event: string; labels: Record<string, string>; data: Record<string, unknown> } | string | null {
  let text: string;
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    return `cannot be opened as a file (${(e as { code?: string }).code ?? "error"})`;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.uid !== uid) return "not a regular file of the chain's owner";
    if (st.size > 4096) return "larger than a supervisor's event";
    const buf = new Uint8Array(st.size);
    readSync(fd, buf, 0, buf.length, 0);
    text = dec.decode(buf);
    if (!text.endsWith("\n")) return Date.now() - st.mtimeMs < SPOOL_TORN_MS ? null : "torn (no newline)";
  } finally {
    closeSync(fd);
  }
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    return "not JSON";
  }
  if (!o || typeof o !== "object" || Array.isArray(o)) return "not a JSON object";
  const { id, sandbox, type, time, source, ...rest } = o as Record<string, unknown>;
  if (typeof id !== "string" || !/^sup-\d{1,10}-\d{1,20}$/.test(id)) return "no supervisor event id";
  if (typeof sandbox !== "string" || !/^sbx-[a-z0-9]{12}$/.test(sandbox)) return "no sandbox id";
  if (typeof type !== "string" || !SPOOL_EVENTS.has(type)) return "not an event a supervisor records";
  if (source !== "supervisor") return "not from a supervisor";
  if (typeof time !== "string" || !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$/.test(time)) return "no timestamp";
  const fields = Object.entries(rest);
  if (fields.length > 8) return "too many fields";
  const data: Record<string, unknown> = { at: time };
  for (const [k, v] of fields) {
    if (!/^[a-zA-Z][a-zA-Z0-9]{0,31}$/.test(k)) return "a field name that is not a word";
    if (!(typeof v === "number" && Number.isFinite(v)) && !(typeof v === "string" && /^[a-z0-9-]{0,40}$/.test(v))) {
      return `field ${k} is not a plain number or word`;
    }
    data[k] = v;
  }
  return { id, event: type, labels: { sandbox, source: "supervisor" }, data };
}

/** The segments of a chain, oldest first. */
function segments(dir: string): string[] {
  try {
    return readdirSync(dir).filter((f) => SEGMENT_RE.test(f)).sort();
  } catch {
    return [];
  }
}

/** The last complete line of a file (read from its end), or null. */
function lastLine(path: string): string | null {
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    for (let want = 4096;; want *= 4) {
      const n = Math.min(want, size);
      const buf = new Uint8Array(n);
      readSync(fd, buf, 0, n, size - n);
      let end = buf.length;
      while (end > 0 && buf[end - 1] !== 0x0a) end--; // a torn last line is not chained to
      if (end === 0) {
        if (n === size) return null;
        continue;
      }
      const start = buf.lastIndexOf(0x0a, end - 2) + 1;
      if (start > 0 || n === size) return dec.decode(buf.subarray(start, end - 1));
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads a chain's entries, oldest first, optionally only those of one sandbox. The lines are not
 * verified here: {@linkcode verifyAudit} does that.
 *
 * @example `for await (const e of readAudit(dir, { sandbox: id })) console.log(e.event)`
 */
export function readAudit(dir: string, filter: { sandbox?: string } = {}): ReadableStream<AuditEntry> {
  const files = segments(dir);
  let i = 0;
  return new ReadableStream<AuditEntry>({
    pull: (c) => {
      for (; i < files.length;) {
        let text = "";
        try {
          text = readFileSync(`${dir}/${files[i++]}`, "utf8");
        } catch { /* rotated away or removed meanwhile */ }
        let any = false;
        for (const line of text.split("\n")) {
          if (!line) continue;
          try {
            const e = (JSON.parse(line) as { entry: AuditEntry }).entry;
            if (filter.sandbox === undefined || e.labels?.sandbox === filter.sandbox) {
              c.enqueue(e);
              any = true;
            }
          } catch { /* a torn line: verifyAudit names it */ }
        }
        if (any) return;
      }
      c.close();
    },
  });
}

/**
 * Verifies a chain folder line by line: each line's entry matches its canonical bytes, its
 * `prev_hash` is the SHA-256 of the line before (genesis for the first), its signature verifies
 * under the chain's public key, `seq` counts up by one, every segment hands off to the next, and
 * the signed `head` names the last line (so a cut tail is found). Reports the first bad line.
 *
 * @example `const r = verifyAuditDir("/var/lib/mvm/audit"); r.status // "VERIFIED"`
 */
export function verifyAuditDir(dir: string): AuditReport {
  const files = segments(dir);
  const report: AuditReport = { status: "VERIFIED", entries: 0, files };
  if (files.length === 0) return { ...report, status: "NOT_FOUND" };
  const bad = (file: string, line: number, reason: string, seq?: number): AuditReport => ({
    ...report,
    status: "MISMATCH",
    firstBad: { file, line, reason, ...(seq === undefined ? {} : { seq }) },
  });
  let pub: KeyObject;
  try {
    pub = createPublicKey(readFileSync(`${dir}/key.pub`, "utf8"));
  } catch {
    return bad(files[0]!, 0, "the chain's public key (key.pub) is missing or unreadable");
  }
  let prev = GENESIS;
  let seq = -1;
  let lastFile = files[0]!;
  let lastSize = 0;
  for (const [fi, file] of files.entries()) {
    if (file !== segmentName(fi + 1)) return bad(file, 0, `segment ${segmentName(fi + 1)} is missing`);
    const bytes = readFileSync(`${dir}/${file}`);
    const text = dec.decode(bytes);
    if (text.length && !text.endsWith("\n")) {
      return bad(file, text.split("\n").length, "the last line is torn (no newline)");
    }
    const lines = text.split("\n").slice(0, -1);
    for (const [li, line] of lines.entries()) {
      const n = li + 1;
      let rec: { entry: AuditEntry; canonical: string; prev_hash: string; signature: string };
      try {
        rec = JSON.parse(line);
      } catch {
        return bad(file, n, "not a JSON line");
      }
      const e = rec.entry;
      const canonical = unb64u(rec.canonical ?? "");
      let same = false;
      try {
        same = JSON.stringify(JSON.parse(dec.decode(canonical))) === JSON.stringify(e);
      } catch { /* not JSON */ }
      if (!same) return bad(file, n, "the entry differs from its signed canonical bytes (edited)", e?.seq);
      const ph = unb64u(rec.prev_hash ?? "");
      if (!equal(ph, prev)) return bad(file, n, "prev_hash is not the hash of the line before (a line was removed, added or moved)", e.seq);
      if (!verify(null, concat(canonical, ph), pub, unb64u(rec.signature ?? ""))) {
        return bad(file, n, "the signature does not verify", e.seq);
      }
      if (e.seq !== seq + 1) return bad(file, n, `seq ${e.seq} follows ${seq}`, e.seq);
      if (li === 0 && fi > 0 && !(e.event === "audit.continued" && e.data?.previous === files[fi - 1])) {
        return bad(file, n, "a segment does not start with the hand-off from the one before", e.seq);
      }
      if (li === lines.length - 1 && fi < files.length - 1 && !(e.event === "audit.rotated" && e.data?.next === files[fi + 1])) {
        return bad(file, n, "a segment does not end with the hand-off to the next", e.seq);
      }
      seq = e.seq;
      prev = sha256(line);
      report.entries++;
    }
    lastFile = file;
    lastSize = bytes.length;
  }
  try {
    const { head, signature } = JSON.parse(readFileSync(`${dir}/head`, "utf8").trim()) as { head: Head; signature: string };
    if (!verify(null, enc.encode(JSON.stringify(head)), pub, unb64u(signature))) {
      return bad(lastFile, 0, "the head's signature does not verify");
    }
    if (head.file !== lastFile || head.seq !== seq || head.hash !== b64u(prev) || head.size !== lastSize) {
      return bad(
        lastFile,
        report.entries,
        `the chain ends at seq ${seq} but its signed head names seq ${head.seq}: lines were cut or added at the end`,
      );
    }
  } catch {
    return bad(lastFile, 0, "the chain's signed head is missing or unreadable");
  }
  return report;
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * Verifies the local engine's audit chain of a state root (default: `$MVM_STATE_DIR`, as the
 * engine reads it): `VERIFIED` when every line is intact, signed and in order, `MISMATCH` with the
 * first bad line (edited, removed, added, moved or cut off), `NOT_FOUND` when there is no chain.
 *
 * @example Check the chain
 * ```ts
 * import assert from "node:assert/strict";
 * import { Sandbox, verifyAudit } from "@mvm/sdk";
 *
 * await using sb = await Sandbox.create();
 * await sb.commands.run(["true"]);
 * const report = await verifyAudit();
 * assert.equal(report.status, "VERIFIED", JSON.stringify(report.firstBad));
 * ```
 */
export async function verifyAudit(options: { stateDir?: string } = {}): Promise<AuditReport> {
  const { auditLog, stateBase } = await import("./engines/local/state.ts");
  const { hostUid } = await import("./runtime/mod.ts");
  const base = options.stateDir?.replace(/\/+$/, "") || stateBase(await hostUid());
  // what supervisors recorded (a TTL expiry, an owner's death) is taken into the chain first
  if (existsSync(`${base}/audit/spool`)) {
    try {
      auditLog(`${base}/sandboxes`).ingest();
    } catch { /* a chain this process cannot write is still verified as it is */ }
  }
  return verifyAuditDir(`${base}/audit`);
}
