/**
 * One exclusive lock between every SDK process of a machine, whichever runtime it is on. Deno and Bun
 * take the kernel's `flock` on `<dir>/lock` (a few µs; dropped when its holder dies). Node has no
 * `flock`: it takes a lock folder `<dir>/lock.d` (`mkdir` is atomic; the holder's pid is a file in it)
 * and then waits until `/proc/locks` shows no `flock` on that file (matched by device and inode); a
 * Deno or Bun process that finds the folder after taking its `flock` lets go and waits for the folder
 * to go. So a Node and a Deno writer never overlap, and the flock path stays as cheap as it was (a
 * `stat` more). A waiting Node holder keeps its folder's time fresh; a folder older than
 * {@linkcode LOCK_STALE_MS} whose holder is not a live process is broken.
 *
 * Scope: Deno and Bun processes exclude one another exactly. A Node process joins them exactly when
 * every client sees the same `/proc` (one PID namespace: `/proc/locks` hides the locks of processes a
 * reader cannot see) and no Node holder stays inside its critical section for 5 s.
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
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync } from "node:fs";
import process from "node:process";
import { runtime } from "./runtime/mod.ts";

/** A lock folder older than this whose holder is not alive is broken. */
export const LOCK_STALE_MS = 5_000;

const pause = new Int32Array(new SharedArrayBuffer(4));
const sleep = (i: number) => Atomics.wait(pause, 0, 0, i < 20 ? 0.2 : 1);

/** Whether the lock folder's holder (the pid file in it) is a live process; unknown counts as alive. */
function holderAlive(folder: string): boolean {
  let names: string[];
  try {
    names = readdirSync(folder);
  } catch {
    return false;
  }
  const pid = names.find((n) => /^\d+$/.test(n));
  if (pid === undefined) return false; // died between mkdir and writing its pid, or left by an old version
  try {
    process.kill(Number(pid), 0);
    return true;
  } catch (e) {
    return (e as { code?: string }).code !== "ESRCH";
  }
}

/** Breaks a lock folder that is old and whose holder is gone; checked every 100 waits. */
function breakStale(folder: string, i: number): void {
  if (i % 100 !== 99) return;
  try {
    if (Date.now() - statSync(folder).mtimeMs <= LOCK_STALE_MS || holderAlive(folder)) return;
    const stale = `${folder}.stale-${crypto.randomUUID().slice(0, 8)}`;
    renameSync(folder, stale);
    rmSync(stale, { recursive: true, force: true });
  } catch { /* someone else broke it */ }
}

/** `/proc/locks`' name of a file: hex major and minor of its device, and its inode. */
function procLocksId(path: string): string {
  const st = statSync(path, { bigint: true });
  const major = ((st.dev >> 8n) & 0xfffn) | ((st.dev >> 32n) & ~0xfffn);
  const minor = (st.dev & 0xffn) | ((st.dev >> 12n) & ~0xffn);
  return `${major.toString(16).padStart(2, "0")}:${minor.toString(16).padStart(2, "0")}:${st.ino}`;
}

/** Whether some process holds (or waits for) a `flock` on the file `/proc/locks` calls `id`. */
function flockHeld(id: string): boolean {
  let text: string;
  try {
    text = readFileSync("/proc/locks", "utf8");
  } catch {
    return false;
  }
  return text.split("\n").some((l) => l.includes(" FLOCK ") && l.split(/\s+/).includes(id));
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
  const f = (() => {
    try {
      return runtime().lockFile?.(`${dir}/lock`);
    } catch {
      return undefined; // (e.g. a folder Deno may not write) the lock folder alone, as Node does
    }
  })();
  if (f) {
    for (let i = 0;; i++) {
      try {
        f.lock();
      } catch (e) {
        f.close();
        throw e;
      }
      if (!existsSync(folder)) return () => f.close(); // closing drops the flock
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
  const release = () => rmSync(folder, { recursive: true, force: true });
  try {
    closeSync(openSync(`${folder}/${process.pid}`, "w", 0o600));
    closeSync(openSync(`${dir}/lock`, "a", 0o600));
    const id = procLocksId(`${dir}/lock`);
    for (let i = 0; flockHeld(id); i++) {
      if (i % 100 === 99) utimesSync(folder, new Date(), new Date()); // still alive, still waiting
      sleep(i);
    }
  } catch (e) {
    release();
    throw e;
  }
  return release;
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
