/**
 * Shared test helpers: which runtime runs the suite, how to run a script in a
 * child process of the same runtime, hashing and memory probes.
 *
 * @example
 * ```ts
 * import { runtimeCommand } from "./helpers.ts";
 * const [cmd, ...args] = runtimeCommand("tests/fixtures/scripts/hello.ts");
 * ```
 * @module
 */
import { execFile, execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import process from "node:process";

/** The argv that runs `file` under the runtime running the tests (on Node, `file` bundled to JavaScript first). */
export function runtimeCommand(file: string): string[] {
  const g = globalThis as Record<string, unknown>;
  if (g.Deno) return [process.execPath, "run", "-A", "--no-check", file];
  if (g.Bun || !file.endsWith(".ts")) return [process.execPath, file];
  return [process.execPath, bundleForNode(file)];
}

const bundled = new Map<string, string>();

/**
 * Node 20 cannot run TypeScript: `file` bundled by `bun build --target=node` into `<file>.node.mjs` beside it, so
 * its `import.meta.url` paths stay the same (scripts/test.sh deletes these files after the run).
 */
export function bundleForNode(file: string): string {
  let out = bundled.get(file);
  if (out === undefined) {
    out = file.replace(/\.ts$/, `.${process.pid}.node.mjs`); // per process: two suites at once never write one file
    const bun = process.env.MVM_TEST_BUN || new URL("../node_modules/.bin/bun", import.meta.url).pathname;
    execFileSync(bun, ["build", file, "--target=node", `--outfile=${out}`], { stdio: ["ignore", "ignore", "inherit"] });
    bundled.set(file, out);
  }
  return out;
}

let nodeThere: boolean | undefined;
/** Whether a `node` is on PATH (CI installs one; the Node suite runs on it). */
export function hasNode(): boolean {
  if (nodeThere === undefined) {
    try {
      execFileSync("node", ["--version"], { stdio: "ignore" });
      nodeThere = true;
    } catch {
      nodeThere = false;
    }
  }
  return nodeThere;
}

/** The name of the runtime running the tests. */
export const RUNTIME: "deno" | "bun" | "node" = (globalThis as Record<string, unknown>).Deno
  ? "deno"
  : (globalThis as Record<string, unknown>).Bun
  ? "bun"
  : "node";

/** sha256 of a whole stream, read with an optional pause every `pauseEvery` chunks. */
export async function sha256Stream(stream: ReadableStream<Uint8Array>, pauseEvery = 0): Promise<{ hex: string; bytes: number }> {
  const h = createHash("sha256");
  let bytes = 0;
  let n = 0;
  for await (const chunk of stream) {
    h.update(chunk);
    bytes += chunk.length;
    if (pauseEvery && ++n % pauseEvery === 0) await new Promise((r) => setTimeout(r, 1));
  }
  return { hex: h.digest("hex"), bytes };
}

/** Resident memory of this process in bytes. */
export function rss(): number {
  return process.memoryUsage().rss;
}

/**
 * Resident memory after a full garbage collection, where the runtime offers one
 * (Bun.gc; Deno's gc() with --v8-flags=--expose-gc): what is still held, not
 * garbage the collector has not got to yet on a busy machine.
 */
export function liveRss(): number {
  const g = globalThis as { Bun?: { gc(force: boolean): void }; gc?: () => void };
  if (g.Bun) g.Bun.gc(true);
  else g.gc?.();
  return rss();
}

/** Waits until `fn` is true or `ms` pass; returns the last value. */
export async function waitFor(fn: () => boolean, ms: number, step = 50): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (fn()) return true;
    await new Promise((r) => setTimeout(r, step));
  }
  return fn();
}

/** The pids whose command line starts with `needle` (from /proc). */
export function pidsMatching(needle: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, "utf8").replaceAll("\0", " ");
      if (cmd.startsWith(needle)) out.push(Number(d));
    } catch { /* gone */ }
  }
  return out;
}

/** Whether a process is alive; a zombie (dead, waiting for the host's init to reap it) is not. */
export function processAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** Where the local engine keeps sandbox folders for this run (honours MVM_STATE_DIR). */
export const STATE: string = `${(process.env.MVM_STATE_DIR || "/var/lib/mvm").replace(/\/+$/, "")}/sandboxes`;

/** The processes a sandbox's supervisor reported in its `pids` file (pid numbers; 0 when missing). */
export function sandboxPids(dir: string): { init: number; reaper: number; supervisor: number } {
  const out = { init: 0, reaper: 0, supervisor: 0 };
  try {
    for (const line of readFileSync(`${dir}/pids`, "utf8").split("\n")) {
      const [k, pid] = line.split(" ");
      if (k === "init" || k === "reaper" || k === "supervisor") out[k] = Number(pid);
    }
  } catch { /* not there */ }
  return out;
}

/** Every item of an async iterable (`Array.fromAsync`, which Node 20 lacks). */
export async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of items) out.push(x);
  return out;
}

/** Reads a stream up to its first newline (or its end) and returns that text, trimmed; the rest stays unread. */
export async function firstLine(stream: ReadableStream<Uint8Array>): Promise<string> {
  const reader = stream.getReader();
  const dec = new TextDecoder();
  let out = "";
  try {
    while (!out.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      out += dec.decode(value, { stream: true });
    }
  } finally {
    reader.releaseLock();
  }
  return out.trim();
}

/** The egress proxy of a sandbox, with the children that relay its connections. */
export function egressPids(id: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (/\0mvm-egress\0\d+\0([^\0]*)\0/.exec(readFileSync(`/proc/${d}/cmdline`, "utf8"))?.[1] === `${STATE}/${id}`) out.push(Number(d));
    } catch { /* gone */ }
  }
  return out;
}

/**
 * Runs `fn` with a fresh copy-on-write state root: an XFS with reflink, in a sparse image beside this
 * suite's state root, on a loop device. Returns why it was skipped instead (not root, no `mkfs.xfs`
 * or `losetup`). The mount is undone (once no sandbox folder is left in it, up to 15 s), the loop device
 * detached and the image removed even when `fn` fails; a busy mount is retried for 10 s, then detached lazily.
 */
export async function withCowStateRoot(sizeMb: number, fn: (stateDir: string) => Promise<void>): Promise<string | null> {
  if (process.getuid?.() !== 0) return "needs root (a loop mount)";
  const which = (b: string) => ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map((d) => `${d}/${b}`).find((p) => existsSync(p));
  const [mkfs, losetup] = [which("mkfs.xfs"), which("losetup")];
  if (!mkfs || !losetup) return "needs mkfs.xfs (apt-get install xfsprogs) and losetup";
  const base = STATE.replace(/\/sandboxes$/, "");
  const img = `${base}-cow-${process.pid}.img`;
  const mnt = `${base}-cow-${process.pid}`;
  const run = (cmd: string, ...args: string[]) => execFileSync(cmd, args, { stdio: ["ignore", "pipe", "pipe"] }).toString().trim();
  let dev = "";
  let mounted = false;
  try {
    writeFileSync(img, "");
    truncateSync(img, sizeMb * 1024 * 1024);
    run(mkfs, "-q", "-m", "reflink=1", img);
    dev = run(losetup, "--find", "--show", img);
    mkdirSync(mnt, { recursive: true });
    run("mount", "-t", "xfs", dev, mnt);
    mounted = true;
    await fn(`${mnt}/state`);
  } finally {
    if (mounted) {
      // what fn's process left (its warm spare ends with it) is torn down by its supervisor, which needs the
      // mount: only then is the file system let go
      const live = () => {
        try {
          return readdirSync(`${mnt}/state/sandboxes`).some((n) => n.startsWith("sbx-"));
        } catch {
          return false;
        }
      };
      await waitFor(() => !live(), 15_000, 100);
      const ok = await waitFor(
        () => {
          try {
            run("umount", mnt);
            return true;
          } catch {
            return false;
          }
        },
        10_000,
        200,
      );
      if (!ok) run("umount", "-l", mnt);
    }
    if (dev) execFileSync(losetup, ["-d", dev], { stdio: "ignore" });
    rmdirSync(mnt, { maxRetries: 0 });
    rmSync(img, { force: true });
  }
  return null;
}

/**
 * Runs tests/fixtures/scripts/cow-fork.ts (forks on a copy-on-write state root) with `state` as its
 * MVM_STATE_DIR; returns its one JSON line. Killed after 120 s.
 */
export async function cowFork(state: string, args: string[]): Promise<Record<string, unknown>> {
  const [cmd, ...rest] = runtimeCommand(new URL("./fixtures/scripts/cow-fork.ts", import.meta.url).pathname);
  const { stdout, stderr } = await new Promise<{ stdout: string; stderr: string }>((resolve) =>
    execFile(
      cmd!,
      [...rest, ...args],
      { env: { ...process.env, MVM_STATE_DIR: state }, timeout: 120_000, killSignal: "SIGKILL", maxBuffer: 1 << 20 },
      (_e, stdout, stderr) => resolve({ stdout: String(stdout), stderr: String(stderr) }),
    )
  );
  const line = stdout.split("\n").find((l) => l.startsWith("{"));
  if (!line) throw new Error(`cow-fork.ts ${args.join(" ")} printed no result: ${stdout.slice(-1000)}${stderr.slice(-3000)}`);
  return JSON.parse(line) as Record<string, unknown>;
}
