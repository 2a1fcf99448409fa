/**
 * One exclusive lock between every SDK process of a machine, whichever runtime it is on. Deno and Bun
 * take the kernel's `flock` on `<dir>/lock` (a few µs; dropped when its holder dies). Node has no
 * `flock`: it takes a lock folder `<dir>/lock.d` (`mkdir` is atomic) and then waits until
 * `/proc/locks` shows no `flock` on that file; a Deno or Bun process that finds the folder after
 * taking its `flock` lets go and waits for the folder to go. So a Node and a Deno writer never
 * overlap, and the flock path stays as cheap as it was (a `stat` more). A lock folder whose holder died
 * is broken after {@linkcode LOCK_STALE_MS}.
 *
 * The audit chain, the snapshot store and a sandbox's `meta.json` updates are read-modify-writes of
 * files that several clients (a detached sandbox's connected handles, the CLI, the owner) may touch
 * at the same instant; without one lock they fork the chain or lose an update.
 *
 * @example
 * ```ts
 * import { withLock } from "./lock.ts";
 * const dir = Deno.makeTempDirSync();
 * const n = withLock(dir, () => 41 + 1);
 * console.log(n); // 42
 * Deno.removeSync(dir, { recursive: true });
 * ```
 * @module
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmdirSync, statSync } from "node:fs";
import { runtime } from "./runtime/mod.ts";
import type { FileLock } from "./runtime/types.ts";

/** A lock folder older than this (its holder died inside the lock) is broken. */
export const LOCK_STALE_MS = 5_000;

const pause = new Int32Array(new SharedArrayBuffer(4));
const sleep = (i: number) => Atomics.wait(pause, 0, 0, i < 20 ? 0.2 : 1);
const flocks = new Map<string, FileLock | null>();

function flockOf(dir: string): FileLock | null {
  let f = flocks.get(dir);
  if (f === undefined) {
    try {
      f = runtime().lockFile?.(`${dir}/lock`) ?? null;
    } catch {
      f = null;
    }
    flocks.set(dir, f);
  }
  return f;
}

/** Breaks a lock folder whose holder died (older than LOCK_STALE_MS); checked every 100 waits. */
function breakStale(folder: string, i: number): void {
  if (i % 100 !== 99) return;
  try {
    if (Date.now() - statSync(folder).mtimeMs > LOCK_STALE_MS) {
      const stale = `${folder}.stale-${crypto.randomUUID().slice(0, 8)}`;
      renameSync(folder, stale);
      rmdirSync(stale);
    }
  } catch { /* someone else broke it */ }
}

/** Whether some process holds a `flock` on the file with inode `ino` (per /proc/locks; unreadable: no). */
function flockHeld(ino: number): boolean {
  let text: string;
  try {
    text = readFileSync("/proc/locks", "utf8");
  } catch {
    return false;
  }
  const tail = `:${ino} `;
  return text.split("\n").some((l) => l.includes(" FLOCK ") && l.includes(tail));
}

/**
 * Takes the lock of `dir` (waits for it; synchronous, as the critical sections it guards are a few
 * file operations) and returns the function that releases it.
 *
 * @example
 * ```ts
 * import { lock } from "./lock.ts";
 * const dir = Deno.makeTempDirSync();
 * const release = lock(dir);
 * try {
 *   Deno.writeTextFileSync(`${dir}/n`, "1"); // read, change, replace
 * } finally {
 *   release();
 * }
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function lock(dir: string): () => void {
  const folder = `${dir}/lock.d`;
  const f = flockOf(dir);
  if (f) {
    for (let i = 0;; i++) {
      f.lock();
      if (!existsSync(folder)) return () => f.unlock();
      f.unlock(); // a Node process holds the folder and waits for every flock to go
      breakStale(folder, i);
      sleep(i);
    }
  }
  for (let i = 0;; i++) {
    try {
      mkdirSync(folder, { mode: 0o700 });
      break;
    } catch (e) {
      if ((e as { code?: string }).code !== "EEXIST") throw e;
    }
    breakStale(folder, i);
    sleep(i);
  }
  try {
    closeSync(openSync(`${dir}/lock`, "a", 0o600));
    const ino = statSync(`${dir}/lock`).ino;
    for (let i = 0; flockHeld(ino); i++) sleep(i);
  } catch (e) {
    rmdirSync(folder);
    throw e;
  }
  return () => rmdirSync(folder);
}

/**
 * Runs `fn` holding the lock of `dir` and returns what it returns.
 *
 * @example
 * ```ts
 * import { withLock } from "./lock.ts";
 * const dir = Deno.makeTempDirSync();
 * withLock(dir, () => Deno.writeTextFileSync(`${dir}/n`, "1"));
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function withLock<T>(dir: string, fn: () => T): T {
  const release = lock(dir);
  try {
    return fn();
  } finally {
    release();
  }
}
