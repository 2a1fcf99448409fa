/**
 * The spool of a detached command: what lets a command outlive the process that started it and be
 * re-attached from another handle or process. It lives in the sandbox's state folder
 * (`<state>/sandboxes/<id>/procs/<cmd-id>/`, 0700, outside the sandbox's root, so guest code can
 * neither see nor write it, and it is removed with the sandbox). Only host-side code writes it: the
 * command's keeper (`keeper.ts`) writes the output and the status, attached clients write stdin
 * chunks and signal requests; every file is created by name in folders the host made, never
 * through a path the guest chose.
 *
 * Output is kept in segments of 1 MiB per stream. Bounded: the keeper keeps at most
 * {@linkcode SPOOL_CAP} bytes a live reader (or, with none, any reader to come) still needs, and
 * stops reading the command's output (backpressure, as for an unread stream) until readers catch up.
 * A segment every live reader has passed is deleted. A reader that joins later starts where it
 * joins (`"now"`) or at the oldest byte still kept (`"start"`).
 *
 * @example
 * ```ts
 * import { SEGMENT, SPOOL_CAP } from "./spool.ts";
 * console.log(SEGMENT, SPOOL_CAP); // 1048576 8388608
 * ```
 * @module
 */
import {
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { ConflictError, TransportError } from "../../errors.ts";
import { fifoHasReader } from "./state.ts";

/** Bytes per output segment. */
export const SEGMENT = 1 << 20;
/** The most output per stream a spool keeps for readers (8 MiB). */
export const SPOOL_CAP = 8 << 20;
/** A reader whose registration was not refreshed for this long is gone. */
const READER_STALE_MS = 5_000;
/** At most this many stdin chunks (each at most 1 MiB) wait for the keeper. */
const STDIN_PENDING = 8;

/** An output stream's file prefix. */
export type StreamName = "out" | "err";

const pad = (n: number) => String(n).padStart(6, "0");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const randomId = () => crypto.randomUUID().replaceAll("-", "").slice(0, 16);

/** What the keeper and its starter record about a detached command (no argv: it may hold secrets). */
export interface SpoolMeta {
  id: string;
  argv0: string;
  argc: number;
  startedAt: string;
  keeperPid: number;
}

/** The spool of one detached command. */
export class Spool {
  constructor(readonly path: string) {}

  /** Makes a new spool folder (the `procs` folder too, once); refuses one that exists. */
  static create(sandboxPath: string, id: string): Spool {
    const procs = `${sandboxPath}/procs`;
    try {
      mkdirSync(procs, { mode: 0o700 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const st = lstatSync(procs);
      if (!st.isDirectory() || (st.mode & 0o077) !== 0) throw new TransportError(`${procs} is not a folder this SDK made`);
    }
    const s = new Spool(`${procs}/${id}`);
    mkdirSync(s.path, { mode: 0o700 });
    mkdirSync(`${s.path}/readers`, { mode: 0o700 });
    mkdirSync(`${s.path}/signals`, { mode: 0o700 });
    for (const n of ["out", "err"] as const) writeFileSync(s.segment(n, 0), "", { mode: 0o600, flag: "wx" });
    return s;
  }

  /** The spools of a sandbox folder, by command id. */
  static list(sandboxPath: string): string[] {
    try {
      return readdirSync(`${sandboxPath}/procs`).filter((n) => /^cmd-[a-z0-9]{12}$/.test(n)).sort();
    } catch {
      return [];
    }
  }

  segment(s: StreamName, n: number): string {
    return `${this.path}/${s}.${pad(n)}`;
  }

  /** The segment numbers of a stream still on disk, oldest first. */
  segments(s: StreamName): number[] {
    try {
      return readdirSync(this.path).filter((f) => f.startsWith(`${s}.`)).map((f) => Number(f.slice(4))).filter(Number.isInteger).sort((
        a,
        b,
      ) => a - b);
    } catch {
      return [];
    }
  }

  exists(): boolean {
    return existsSync(this.path);
  }

  /** Writes a small file atomically (a temporary name, then a rename), 0600. */
  #commit(name: string, data: string | Uint8Array): void {
    const tmp = `${this.path}/.tmp-${randomId()}`;
    writeFileSync(tmp, data, { mode: 0o600, flag: "wx" });
    renameSync(tmp, `${this.path}/${name}`);
  }

  writeMeta(m: SpoolMeta): void {
    this.#commit("meta.json", JSON.stringify(m));
  }
  readMeta(): SpoolMeta | null {
    return this.#readJson("meta.json") as SpoolMeta | null;
  }
  /** The fifo its keeper holds open for reading while it lives (made by the shell that starts it). */
  get keeperFifo(): string {
    return `${this.path}/keeper.alive`;
  }
  /** Whether the keeper still lives: it alone holds {@linkcode keeperFifo} open, so no pid is signalled. */
  keeperAlive(): boolean {
    return fifoHasReader(this.keeperFifo);
  }
  markStarted(): void {
    this.#commit("started", "");
  }
  started(): boolean {
    return existsSync(`${this.path}/started`);
  }
  /** The end of the command: its status, or the error that ended the keeper's watch. */
  writeStatus(v: { status?: unknown; error?: { code: string; message: string } }): void {
    this.#commit("status.json", JSON.stringify(v));
  }
  readStatus(): { status?: unknown; error?: { code: string; message: string } } | null {
    return this.#readJson("status.json") as { status?: unknown; error?: { code: string; message: string } } | null;
  }
  #readJson(name: string): unknown {
    try {
      return JSON.parse(readFileSync(`${this.path}/${name}`, "utf8"));
    } catch {
      return null;
    }
  }

  // ---- readers

  /** Registers a reader at segment `n` of a stream and keeps the registration fresh until `close()`. */
  register(s: StreamName, n: number): { update(n: number): void; close(): void } {
    const file = `readers/${randomId()}.${s}`;
    let at = n;
    const write = () => {
      try {
        this.#commit(file, String(at));
      } catch { /* the spool is gone */ }
    };
    write();
    const timer = setInterval(write, 1_000);
    // a reader's heartbeat must not keep a finished program alive
    (timer as unknown as { unref?: () => void }).unref?.();
    return {
      update: (k) => {
        at = k;
        write();
      },
      close: () => {
        clearInterval(timer);
        rmSync(`${this.path}/${file}`, { force: true });
      },
    };
  }

  /** The segments live readers of a stream are at; stale registrations are removed. */
  liveReaders(s: StreamName): number[] {
    const out: number[] = [];
    let names: string[] = [];
    try {
      names = readdirSync(`${this.path}/readers`).filter((f) => f.endsWith(`.${s}`));
    } catch {
      return out;
    }
    const now = Date.now();
    for (const f of names) {
      const p = `${this.path}/readers/${f}`;
      try {
        if (now - statSync(p).mtimeMs > READER_STALE_MS) {
          rmSync(p, { force: true });
          continue;
        }
        const n = Number(readFileSync(p, "utf8"));
        if (Number.isInteger(n)) out.push(n);
      } catch { /* gone meanwhile */ }
    }
    return out;
  }

  /** Deletes the segments of a stream every live reader has passed (with none, all but the last: nobody is reading). */
  prune(s: StreamName, keepAllWithoutReaders = true): void {
    const live = this.liveReaders(s);
    const segs = this.segments(s);
    if (live.length === 0 && keepAllWithoutReaders) return;
    const oldest = live.length ? Math.min(...live) : (segs.at(-1) ?? 0);
    for (const k of segs) if (k < oldest) rmSync(this.segment(s, k), { force: true });
  }

  // ---- stdin

  /** Claims the command's stdin for one writer; a second writer is a CONFLICT. */
  claimStdin(): StdinSpoolWriter {
    try {
      mkdirSync(`${this.path}/stdin`, { mode: 0o700 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EEXIST") {
        throw new ConflictError("this command's stdin is already taken by another writer (one writer per command)");
      }
      throw e;
    }
    return new StdinSpoolWriter(this);
  }

  /** The next stdin chunk for the keeper: bytes, `"end"`, or null when none is there yet. */
  takeStdin(seq: number): Uint8Array | "end" | null {
    const dir = `${this.path}/stdin`;
    const p = `${dir}/${pad(seq)}`;
    try {
      const data = readFileSync(p);
      rmSync(p, { force: true });
      return new Uint8Array(data);
    } catch {
      return existsSync(`${dir}/end`) && !existsSync(p) ? "end" : null;
    }
  }

  // ---- signals

  /** Asks the keeper to signal the command's tree. */
  requestSignal(signal: string): void {
    const tmp = `${this.path}/.tmp-${randomId()}`;
    writeFileSync(tmp, signal, { mode: 0o600, flag: "wx" });
    renameSync(tmp, `${this.path}/signals/${randomId()}`);
  }

  /** The signals asked for since the last call (each request is consumed). */
  takeSignals(): string[] {
    const out: string[] = [];
    let names: string[] = [];
    try {
      names = readdirSync(`${this.path}/signals`);
    } catch {
      return out;
    }
    for (const n of names) {
      const p = `${this.path}/signals/${n}`;
      try {
        out.push(readFileSync(p, "utf8").trim());
      } catch { /* taken */ }
      rmSync(p, { force: true });
    }
    return out;
  }
}

/** A client's writer of a command's stdin: chunks of at most 1 MiB, at most 8 waiting. */
export class StdinSpoolWriter {
  #seq = 0;
  constructor(readonly spool: Spool) {}
  async write(chunk: Uint8Array): Promise<void> {
    for (let at = 0; at < chunk.length; at += SEGMENT) {
      const part = chunk.subarray(at, Math.min(chunk.length, at + SEGMENT));
      // bounded: wait while the keeper has not taken earlier chunks
      while (this.#pending() >= STDIN_PENDING) {
        if (!this.spool.exists() || this.spool.readStatus()) throw new TransportError("the command ended; its stdin takes no more");
        await sleep(10);
      }
      const dir = `${this.spool.path}/stdin`;
      const tmp = `${dir}/.tmp-${randomId()}`;
      writeFileSync(tmp, part, { mode: 0o600, flag: "wx" });
      renameSync(tmp, `${dir}/${pad(this.#seq++)}`);
    }
  }
  #pending(): number {
    try {
      return readdirSync(`${this.spool.path}/stdin`).filter((f) => /^\d+$/.test(f)).length;
    } catch {
      return 0;
    }
  }
  close(): void {
    try {
      writeFileSync(`${this.spool.path}/stdin/end`, "", { mode: 0o600, flag: "wx" });
    } catch { /* closed already, or the spool is gone */ }
  }
}

/**
 * The keeper's writer of one output stream: appends in segments, and before starting a segment
 * waits until it is within {@linkcode SPOOL_CAP} of the oldest segment a reader still needs.
 */
export class SegmentWriter {
  #n = 0;
  #size = 0;
  constructor(readonly spool: Spool, readonly stream: StreamName, readonly stop: () => boolean) {}
  async write(chunk: Uint8Array): Promise<void> {
    let at = 0;
    while (at < chunk.length) {
      if (this.#size === SEGMENT) await this.#roll();
      const take = Math.min(SEGMENT - this.#size, chunk.length - at);
      // appended by name into the keeper's own folder; O_APPEND, no create: a spool removed with
      // its sandbox is never made again
      const fd = openSync(this.spool.segment(this.stream, this.#n), "r+");
      try {
        let done = 0;
        while (done < take) done += writeSync(fd, chunk, at + done, take - done, this.#size + done);
      } finally {
        closeSync(fd);
      }
      this.#size += take;
      at += take;
    }
  }
  async #roll(): Promise<void> {
    for (let wait = 1;; wait = Math.min(wait * 2, 50)) {
      if (this.stop()) throw new TransportError("the sandbox is going away");
      const live = this.spool.liveReaders(this.stream);
      const segs = this.spool.segments(this.stream);
      const oldest = live.length ? Math.min(...live) : (segs[0] ?? this.#n);
      if (live.length) { for (const k of segs) if (k < oldest) rmSync(this.spool.segment(this.stream, k), { force: true }); }
      if ((this.#n + 1 - oldest) * SEGMENT <= SPOOL_CAP) break;
      await sleep(wait);
    }
    writeFileSync(this.spool.segment(this.stream, this.#n + 1), "", { mode: 0o600, flag: "wx" });
    this.#n++;
    this.#size = 0;
  }
}

/**
 * Reads one output stream of a spool as a Web Stream, from the oldest byte kept (`"start"`) or from
 * where it joins (`"now"`), following it until the command ended and everything was read. It holds
 * the command back (through the spool's bound) only once it is read from. `dead()`
 * says why nothing more will come when the status is missing (the keeper or the sandbox is gone).
 *
 * @example `tailSpool(spool, "out", "start", () => null)`
 */
export function tailSpool(spool: Spool, s: StreamName, from: "start" | "now", dead: () => Error | null): ReadableStream<Uint8Array> {
  let k = 0;
  let off = 0;
  let reg: ReturnType<Spool["register"]> | undefined;
  let final = false;
  const finish = () => {
    reg?.close();
    reg = { update() {}, close() {} };
  };
  return new ReadableStream<Uint8Array>({
    start() {
      const segs = spool.segments(s);
      k = from === "start" ? (segs[0] ?? 0) : (segs.at(-1) ?? 0);
      off = 0;
      if (from === "now") {
        try {
          off = statSync(spool.segment(s, k)).size;
        } catch { /* not there: from its start */ }
      }
    },
    async pull(c) {
      // registered on the first read: a handle nobody reads from holds nothing back
      reg ??= spool.register(s, k);
      for (let wait = 2;;) {
        let n = 0;
        const buf = new Uint8Array(256 * 1024);
        try {
          const fd = openSync(spool.segment(s, k), "r");
          try {
            n = readSync(fd, buf, 0, buf.length, off);
          } finally {
            closeSync(fd);
          }
        } catch {
          // the segment went: the spool with its sandbox, or a segment others had passed before this reader registered
          if (!spool.exists()) {
            finish();
            return c.error(dead() ?? new TransportError("the command's spool is gone (its sandbox was destroyed)"));
          }
          const segs = spool.segments(s);
          const next = segs.find((x) => x > k);
          if (next === undefined) {
            finish();
            return c.error(new TransportError("the command's output spool lost its place"));
          }
          k = next;
          off = 0;
          reg?.update(k);
          continue;
        }
        if (n > 0) {
          off += n;
          return c.enqueue(buf.slice(0, n));
        }
        if (existsSync(spool.segment(s, k + 1))) {
          k++;
          off = 0;
          reg?.update(k);
          continue;
        }
        if (final) {
          finish();
          spool.prune(s, false);
          return c.close();
        }
        if (spool.readStatus()) {
          // the keeper writes the status after the last byte: read once more, then end
          final = true;
          continue;
        }
        const d = dead();
        if (d) {
          finish();
          return c.error(d);
        }
        await sleep(wait);
        wait = Math.min(wait * 2, 50);
      }
    },
    cancel() {
      finish();
    },
  }, { highWaterMark: 0 });
}
