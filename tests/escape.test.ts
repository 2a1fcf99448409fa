// The escape suite: the guest is hostile. Each test runs a real attack from inside a real sandbox (python3 and
// ctypes syscalls, as any guest program could) and asserts the secure outcome: the SDK's own helpers cannot be
// taken over, replaced, read or signalled; results are what the host computed; nothing of the host (descriptors,
// keyring, state, processes, cgroups) is reachable; arguments arrive byte for byte; what held before still holds.
// One sandbox is shared by the attacks that leave it intact; attacks that wreck state get fresh sandboxes. Every
// sandbox is disposed in finally (or `await using`), and every host process a test starts is killed by its pid.
import { after, test as nodeTest, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createServer } from "node:net";
import { Buffer } from "node:buffer";
import { arch } from "node:os";
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import process from "node:process";
import {
  type CommandOptions,
  ConflictError,
  InvalidInputError,
  NetworkPolicy,
  NoSpaceError,
  NotFoundError,
  PermissionDeniedError,
  Sandbox,
  type SandboxError,
  SecretRef,
  Snapshot,
  TransportError,
  UnsupportedError,
  verifyAudit,
} from "../mod.ts";
import { type ChildProcess, runtime } from "../src/runtime/mod.ts";
import { detectRuntime } from "../src/runtime/detect.ts";
import { collectText } from "../src/streams.ts";
import { collect, cowFork, egressPids, processAlive, runtimeCommand, sandboxPids, STATE, waitFor, withCowStateRoot } from "./helpers.ts";
import { terminatorDir } from "../src/engines/local/network.ts";
import { startTestNet } from "./netns.ts";

/**
 * The attacks from inside the sandbox on what is the same on every runtime — the engine's in-sandbox helpers (the
 * shell, Perl and tools under /.mvm), namespaces, cgroups, the egress proxy — whose host side is plain
 * run/read/write calls. With MVM_TEST_SHARD=1 (scripts/test.sh) each runs on one runtime, Deno and Bun taking
 * turns in file order, and shows as skipped on the other, so the whole run stays inside its time budget; the
 * attacks whose host side differs per runtime (streams, descriptors, umask, keepers, state roots, PTYs) run on
 * both. Without it (a plain `deno test` or `bun test`) every one runs.
 */
const ONCE = [
  "ptrace, /proc/N/mem, process_vm_writev, pidfd_getfd, /proc/N/fd|environ against a waiting warm runner",
  "a guest cannot read the next job's frame",
  "a runner's job slots (host-only fifos) are out of the guest's reach",
  "a guest cannot forge a runner's start report",
  "/proc/N/root and /proc/N/cwd of every other process",
  "/proc/self/mounts, /proc/self/cgroup",
  "a guest process has no capabilities",
  "no_new_privs is set on guest processes",
  "mount, bind-remount of /usr rw",
  "creating a user namespace inside the sandbox is refused",
  "setuid binaries of the host image do not elevate",
  "/proc/1/root, /proc/self/root and ../ chains",
  "files.read of ../../etc/shadow",
  "a guest symlink to / is followed only inside the sandbox",
  "writes to /usr and /etc fail",
  "a TCP server on the host's loopback cannot be reached",
  "an abstract unix socket of the host cannot be reached",
  "a guest cannot signal a host process by its pid",
  "SIGSTOP to every other process of the sandbox",
  "SIGKILL to every process it can reach (kill -1)",
  "replacing /bin (rename the symlink",
  "replacing /sbin with fake",
  "replacing /lib with a mirror",
  "a stand-in ELF loader at /lib64",
  "planting fake programs in /usr/local/bin",
  "a tmpfs /tmp past tmpSizeMb",
  "a fork bomb stops at pidsLimit",
  "allocating past memoryMb is OOM-killed",
  "the SDK's tools at /.mvm cannot be renamed",
  "a pause holds against a forking guest",
  "guest code cannot reconfigure, crash, overload or misuse the egress proxy",
  "the audit chain, its key and its lock are out of the guest's sight",
  "the lease's watch, its control fifos",
  "a guest holding a secret's placeholder cannot have the egress proxy",
].map((k) => `escape: ${k}`);
let onceTurn = 0;
type TestFn = (t: TestContext) => void | Promise<void>;
function test(name: string, ...rest: [TestFn] | [{ skip?: string | boolean }, TestFn]): void {
  const [opts, fn] = rest.length === 1 ? [{}, rest[0]] : rest;
  let skip = opts.skip ?? false;
  if (ONCE.some((k) => name.startsWith(k))) {
    const turn = onceTurn++ % 2 === 0 ? "deno" : "bun";
    const here = detectRuntime();
    if (process.env.MVM_TEST_SHARD === "1" && here !== turn && here !== "node") {
      skip = `runs on ${turn === "deno" ? "Deno" : "Bun"} in a sharded run (MVM_TEST_SHARD=1)`;
    }
  }
  void nodeTest(name, { ...opts, skip }, fn);
}

const FIXTURE = new URL("./fixtures/escape/host.ts", import.meta.url).pathname;
const STATE_BASE = STATE.replace(/\/sandboxes$/, "");
const TAG = `${process.pid}-${Date.now() % 1_000_000}`;
const sha = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");
// deno-lint-ignore no-explicit-any
type Json = any;

// ---------------------------------------------------------------------------------------------------------------
// helpers

/** Rejects when `p` has not settled within `ms`: an attack that makes the SDK hang is a failure, not a stuck suite. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, rej) => timer = setTimeout(() => rej(new Error(`${what}: no answer within ${ms / 1000} s`)), ms));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** Runs a python program in the guest and parses the JSON it prints. */
async function guestJson(sb: Sandbox, code: string, args: string[] = [], opts: CommandOptions = {}): Promise<Json> {
  const r = await within(sb.commands.run(["python3", "-c", code, ...args], { timeoutSeconds: 60, ...opts }), 90_000, "guest probe");
  try {
    return JSON.parse(r.stdout);
  } catch {
    assert.fail(
      `the guest probe printed no JSON (exit ${r.exitCode}, signal ${r.signal}): ${r.stdout.slice(0, 400)} ${r.stderr.slice(0, 1500)}`,
    );
  }
}

/** A `sleep` on the host that a test owns and kills by its pid. */
async function hostSleep(): Promise<ChildProcess> {
  return await runtime().spawn("sleep", ["600"], { stdout: "null", stderr: "null" });
}
/**
 * A host `sleep` to stand for a process that got a sandbox's recycled pid: started a few clock ticks after the
 * sandbox's own processes, as a process given a recycled number always is.
 */
async function laterSleep(): Promise<ChildProcess> {
  await new Promise((r) => setTimeout(r, 50));
  return await runtime().spawn("sleep", ["600"], { stdout: "null", stderr: "null" });
}
async function killOwn(...children: Array<ChildProcess | undefined>): Promise<void> {
  for (const c of children) {
    if (!c) continue;
    c.kill("SIGKILL");
    await c.status;
  }
}

/**
 * If a pid-reuse test's sandbox folder outlived destroy(), its `pids` file (which names this test's dead victims) is
 * removed, so that no later cleanup signals whatever process gets those numbers next. The folder itself is left for
 * the runner's leak check to report.
 */
function forgetPids(dir: string): void {
  if (!existsSync(dir)) return;
  rmSync(`${dir}/pids`, { force: true });
}

/** A process's start time (field 22 of /proc/PID/stat), as the engine records it; "" when it is gone. */
function startTime(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? "";
  } catch {
    return "";
  }
}

type PidRole = "init" | "reaper" | "supervisor";

/**
 * What a recycled pid looks like: the numbers of the given roles in a sandbox's `pids` file become those of
 * host processes this test owns, while the recorded start times stay the original processes' own. Returns the
 * original lines' pid and start time by role.
 */
function recyclePids(dir: string, to: Partial<Record<PidRole, number>>): Record<PidRole, { pid: number; start: string }> {
  const f = `${dir}/pids`;
  const text = readFileSync(f, "utf8");
  const orig = {} as Record<PidRole, { pid: number; start: string }>;
  const lines = text.split("\n").map((line) => {
    const [k, pid, start] = line.split(" ");
    if (k !== "init" && k !== "reaper" && k !== "supervisor") return line;
    orig[k] = { pid: Number(pid), start };
    const victim = to[k];
    if (victim === undefined) return line;
    // a process that got a recycled number started after the one that had it (start times count clock ticks)
    assert.notEqual(startTime(victim), start, `test setup: victim ${victim} started in the same clock tick as the ${k}`);
    return `${k} ${victim} ${start}`;
  });
  for (const k of ["init", "reaper", "supervisor"] as const) assert.ok(orig[k]?.start, `the pids file has no ${k} line: ${text}`);
  writeFileSync(f, lines.join("\n"));
  assert.deepEqual(
    Object.fromEntries(Object.keys(to).map((k) => [k, sandboxPids(dir)[k as PidRole]])),
    to,
    "test setup: the rewritten pids file does not name the victims",
  );
  return orig;
}

/**
 * Waits until the client's runner pool is idle (a command has run and the next spare is in place). Known engine
 * bug, reported separately: a supervisor SIGKILLed while a runner is being spawned leaves the client spinning with
 * its event loop blocked (on Deno and Bun), so no timeout fires; these tests kill the supervisor only once idle.
 */
async function settle(sb: Sandbox): Promise<void> {
  await within(sb.commands.run(["true"]), 60_000, "a first command");
  await new Promise((r) => setTimeout(r, 300));
}

/** Ends this test's own process (named by pid and start time) if it still runs, and waits until it is gone. */
async function endOwn(p: { pid: number; start: string } | undefined, signal: "SIGTERM" | "SIGKILL"): Promise<void> {
  if (!p || startTime(p.pid) !== p.start) return;
  try {
    process.kill(p.pid, signal);
  } catch { /* gone */ }
  await waitFor(() => startTime(p.pid) !== p.start, 10_000);
}

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const c = await runtime().spawn("true", [], { stdout: "null", stderr: "null" });
  await c.status;
  return c.pid;
}

/** Runs tests/fixtures/escape/host.ts in a child process (optionally behind a wrapper argv) and parses its JSON. */
async function runFixture(mode: string, opts: { env?: Record<string, string>; wrap?: string[] } = {}): Promise<Json> {
  const [cmd, ...args] = [...(opts.wrap ?? []), ...runtimeCommand(FIXTURE), mode, TAG];
  const c = await runtime().spawn(cmd, args, { env: opts.env, stderr: "piped", signal: AbortSignal.timeout(120_000) });
  const [stdout, stderr, status] = await Promise.all([collectText(c.stdout!), collectText(c.stderr!), c.status]);
  const line = stdout.trim().split("\n").pop() ?? "";
  try {
    return JSON.parse(line);
  } catch {
    assert.fail(
      `fixture ${mode} printed no JSON (exit ${status.code} ${status.signal ?? ""}): ${stdout.slice(-400)} ${stderr.slice(-1500)}`,
    );
  }
}

/** Names of the sandbox cgroups on this host (any state dir), as the local engine lays them out. */
function sandboxGroups(): string[] {
  const names = new Set<string>();
  for (const h of ["/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/pids"]) {
    try {
      for (const n of readdirSync(`${h}/mvm`)) if (n.startsWith("sbx-")) names.add(n);
    } catch { /* no such hierarchy */ }
  }
  return [...names];
}

/**
 * A second state dir for a child client, with an empty folder for every sandbox cgroup on this host except
 * `exposed`: an engine whose cleanup judges groups by *its* folder only would otherwise kill sandboxes that
 * are not this test's (other state dirs on a shared machine, and this suite's shared sandbox). Only `exposed`
 * is left for the attack.
 */
function secondStateDir(exposed: string[] = []): string {
  const base = mkdtempSync(`/tmp/mvm-escape-state-${TAG}-`);
  chmodSync(base, 0o711);
  mkdirSync(`${base}/sandboxes`, { mode: 0o711 });
  for (const n of sandboxGroups()) if (!exposed.includes(n)) mkdirSync(`${base}/sandboxes/${n}`, { mode: 0o700 });
  return base;
}

/** The v2 cgroup hierarchy the host's root can write, or null. */
function v2Root(): string | null {
  for (const r of ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]) {
    if (existsSync(`${r}/cgroup.procs`) && existsSync(`${r}/cgroup.subtree_control`)) return r;
  }
  return null;
}

function randomId(): string {
  const a = "abcdefghijklmnopqrstuvwxyz0123456789";
  return "sbx-" + Array.from(randomBytes(12), (b) => a[b % 36]).join("");
}

/** A deterministic generator, so a failing random case can be replayed from its seed. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const PIECES = [
  "\n",
  "\n\n",
  "'",
  '"',
  "%s",
  "%",
  "%d",
  "%%",
  "%n",
  "$",
  "$HOME",
  "${IFS}",
  "$(echo INJECTED)",
  "`echo INJECTED`",
  "\\",
  "\\n",
  "\\'",
  "'\\''",
  '"$mvm_nl"',
  "$mvm_nl",
  "mvm_nl",
  "\t",
  "\r",
  " ",
  "  ",
  "*",
  "?",
  "[a-z]",
  "~",
  "#",
  ";",
  "&&",
  "|",
  ">",
  "<",
  "!",
  "{a,b}",
  "=",
  "-",
  "--",
  "-c",
  "\x1b[31m",
  "\x7f",
  "\x01",
  "é",
  "ü",
  "😀",
  "中文",
  "\u2028",
  "\u00a0",
  "\ufeff",
];
function randomString(r: () => number): string {
  let s = "";
  const n = Math.floor(r() * 9);
  for (let i = 0; i < n; i++) {
    const k = r();
    if (k < 0.5) s += PIECES[Math.floor(r() * PIECES.length)];
    else if (k < 0.8) s += String.fromCharCode(0x20 + Math.floor(r() * 95));
    else if (k < 0.95) {
      let c = 0x80 + Math.floor(r() * (0xd800 - 0x80));
      if (c >= 0xd800) c = 0xe000;
      s += String.fromCharCode(c);
    } else s += String.fromCodePoint(0x10000 + Math.floor(r() * 0xfffff));
  }
  if (r() < 0.15) s = " " + s;
  if (r() < 0.15) s += " ";
  return s;
}
const SPECIAL_ENV = [
  "mvm_nl",
  "IFS",
  "PATH",
  "CDPATH",
  "PS1",
  "PS2",
  "PS4",
  "OPTIND",
  "HOME",
  "TERM",
  "SHELL",
  "TMPDIR",
  "MVM_NONCE",
  "mvm_job",
  "mvm_agent",
  "MVM_INIT",
  "MVM_RUNNER",
  "MVM_CG1",
  "MVM_SELF_CG",
  "MY_PATH",
  "LIBPATH",
  "XDG_DATA_DIRS",
  "P",
  "a",
];

/** A minimal ustar archive (for hostile member names and links). */
function tar(entries: Array<{ name: string; type: "0" | "2" | "5"; data?: string; link?: string }>): Uint8Array<ArrayBuffer> {
  const enc = new TextEncoder();
  const blocks: Uint8Array[] = [];
  for (const e of entries) {
    const body = enc.encode(e.data ?? "");
    const h = new Uint8Array(512);
    const put = (s: string, off: number, len: number) => h.set(enc.encode(s).subarray(0, len), off);
    put(e.name, 0, 100);
    put(e.type === "5" ? "0000755\0" : "0000644\0", 100, 8);
    put("0000000\0", 108, 8);
    put("0000000\0", 116, 8);
    put(body.length.toString(8).padStart(11, "0") + "\0", 124, 12);
    put("00000000000\0", 136, 12);
    put("        ", 148, 8);
    put(e.type, 156, 1);
    put(e.link ?? "", 157, 100);
    put("ustar\0", 257, 6);
    put("00", 263, 2);
    put(h.reduce((a, b) => a + b, 0).toString(8).padStart(6, "0") + "\0 ", 148, 8);
    blocks.push(h);
    const padded = new Uint8Array(Math.ceil(body.length / 512) * 512);
    padded.set(body);
    blocks.push(padded);
  }
  blocks.push(new Uint8Array(1024));
  const out = new Uint8Array(blocks.reduce((a, b) => a + b.length, 0));
  let o = 0;
  for (const b of blocks) out.set(b, o), o += b.length;
  return out;
}

function streamOf(chunks: number, size: number, delayMs: number, fill?: (i: number) => Uint8Array): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    async pull(c) {
      if (i >= chunks) return c.close();
      if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
      c.enqueue(fill ? fill(i) : new Uint8Array(size));
      i++;
    },
  });
}

/** After an attack: commands and file operations still give what the host computes. */
async function assertSdkTruthful(sb: Sandbox, label: string): Promise<void> {
  const data = randomBytes(300_000);
  const want = sha(data);
  const w = await within(sb.files.write("/app/after-attack.bin", data), 30_000, `${label}: files.write`);
  assert.equal(w.size, data.length, `${label}: files.write reported size ${w.size}`);
  const sum = await within(
    sb.commands.run(["/usr/bin/sha256sum", "/app/after-attack.bin"], { timeoutSeconds: 20 }),
    30_000,
    `${label}: sha256sum`,
  );
  assert.equal(
    sum.stdout.split(" ")[0],
    want,
    `${label}: sha256sum in the guest disagrees with the host (exit ${sum.exitCode}): ${sum.stdout}${sum.stderr}`,
  );
  const calc = await within(sb.commands.run(["sh", "-c", "echo $((6*7))"], { timeoutSeconds: 20 }), 30_000, `${label}: sh`);
  assert.deepEqual([calc.stdout, calc.exitCode], ["42\n", 0], `${label}: sh -c 'echo $((6*7))' gave ${JSON.stringify(calc)}`);
  const back = await within(sb.files.read("/app/after-attack.bin"), 30_000, `${label}: files.read`);
  assert.equal(sha(back), want, `${label}: files.read returned other bytes than were written`);
  const listed = await within(sb.files.list("/app"), 30_000, `${label}: files.list`);
  const entry = listed.find((e) => e.name === "after-attack.bin");
  assert.ok(entry && entry.size === data.length && entry.type === "file", `${label}: files.list gave ${JSON.stringify(listed)}`);
}

/** Reads a guest file through the SDK, or "" when it does not exist. */
async function guestLog(sb: Sandbox, path: string): Promise<string> {
  try {
    return await within(sb.files.readText(path), 30_000, `read ${path}`);
  } catch (e) {
    if (e instanceof NotFoundError) return "";
    throw e;
  }
}
const short = (s: string) => s.split("\n").map((l) => l.length > 160 ? l.slice(0, 160) + "…" : l).slice(0, 40).join("\n");

// ---------------------------------------------------------------------------------------------------------------
// guest programs

/**
 * The takeover attempts against every process of the sandbox outside the attacker's own tree: PTRACE_SEIZE (the
 * permission check of PTRACE_ATTACH; in a forked child, whose exit detaches at once), /proc/N/mem for writing, process_vm_writev
 * (EFAULT means the permission check passed), pidfd_getfd (EBADF means it passed), /proc/N/fd and /proc/N/environ.
 * Scans for argv[1] seconds, so short-lived helpers (the agent's cat, dd, tar …) are caught too.
 */
const ATTACK_PY = String.raw`
import ctypes, errno, json, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
sc = libc.syscall; sc.restype = ctypes.c_long
L = ctypes.c_long
class IOV(ctypes.Structure): _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]
me = os.getpid()
def parent(pid):
    s = open('/proc/%d/stat' % pid).read()
    return int(s[s.rindex(')') + 2:].split()[1])
def own(pid):
    try:
        while pid > 1:
            if pid == me: return True
            pid = parent(pid)
    except (OSError, ValueError): return True   # gone
    return pid == me
def cmd(pid):
    try: return open('/proc/%d/cmdline' % pid, 'rb').read().replace(b'\0', b' ')[:70].decode('utf-8', 'replace')
    except OSError: return '?'
def traced(pid):
    child = os.fork()
    if child == 0:
        # PTRACE_SEIZE: the permission check of PTRACE_ATTACH, without stopping the tracee
        os._exit(0 if libc.ptrace(L(0x4206), L(pid), None, None) == 0 else 1)
    _, st = os.waitpid(child, 0)
    return os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0
def attempts(pid):
    got = []
    if traced(pid): got.append('ptrace')
    try: open('/proc/%d/mem' % pid, 'r+b').close(); got.append('mem-write')
    except OSError: pass
    buf = ctypes.create_string_buffer(1)
    local = IOV(ctypes.cast(buf, ctypes.c_void_p), 1); remote = IOV(None, 1)
    ctypes.set_errno(0)
    if sc(L(311), L(pid), ctypes.byref(local), L(1), ctypes.byref(remote), L(1), L(0)) >= 0 or ctypes.get_errno() == errno.EFAULT:
        got.append('process_vm_writev')
    pfd = sc(L(434), L(pid), L(0))
    if pfd >= 0:
        ctypes.set_errno(0)
        g = sc(L(438), L(pfd), L(0), L(0))
        if g >= 0: os.close(g)
        if g >= 0 or ctypes.get_errno() == errno.EBADF: got.append('pidfd_getfd')
        os.close(pfd)
    try: os.listdir('/proc/%d/fd' % pid); got.append('fd-list')
    except OSError: pass
    try: open('/proc/%d/environ' % pid, 'rb').read(); got.append('environ')
    except OSError: pass
    return got
end = time.time() + float(sys.argv[1])
seen = {}
hits = []
while True:
    for d in os.listdir('/proc'):
        if not d.isdigit(): continue
        pid = int(d)
        if own(pid): continue
        c = cmd(pid)
        if (pid, c) in seen: continue
        seen[(pid, c)] = 1
        got = attempts(pid)
        if got: hits.append({'pid': pid, 'cmd': c, 'got': got})
    if time.time() >= end: break
    time.sleep(0.01)
print(json.dumps({'seen': ['%d %s' % k for k in seen], 'hits': hits}))
`;

function assertNoTakeover(res: Json, when: string): void {
  const lines = (res.hits as Array<{ pid: number; cmd: string; got: string[] }>).map((h) => `pid ${h.pid} (${h.cmd}): ${h.got.join(", ")}`);
  assert.deepEqual(lines, [], `${when}: guest code got hold of processes outside its own tree:\n${lines.join("\n")}`);
}

/** Replaces a root directory (rename, remove, recreate) with fakes: logging wrappers for programs, a mirror with a stand-in loader for libraries. */
const REPLACE_PY = String.raw`
import json, os, shutil, struct, sys
target, kind, code = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
steps = []
def step(name, fn):
    try:
        fn(); steps.append(name + ': ok'); return True
    except OSError as e:
        steps.append('%s: %s' % (name, e.strerror)); return False
real = os.path.realpath(target)
if not real.startswith('/usr'): real = '/usr' + target
step('rename ' + target, lambda: os.rename(target, target + '.orig'))
if os.path.lexists(target):
    if os.path.islink(target) or not os.path.isdir(target): step('unlink ' + target, lambda: os.unlink(target))
    else: step('rmtree ' + target, lambda: shutil.rmtree(target))
step('mkdir ' + target, lambda: os.makedirs(target, exist_ok=True))
WRAP = '#!/usr/bin/sh\nprintf "%%s\\n" "%s $*" | /usr/bin/head -c 200 >> /tmp/mvm-hijack.log; echo >> /tmp/mvm-hijack.log\nexec %s "$@"\n'
FAKE_SH = r'''#!/usr/bin/sh
printf '%s\n' "sh $*" | /usr/bin/head -c 200 >> /tmp/mvm-hijack.log; echo >> /tmp/mvm-hijack.log
case " $* " in *mvm-runner*)
  IFS= read -r job || exit 0
  printf 'job: %s\n' "$job" | /usr/bin/head -c 200 >> /tmp/mvm-hijack.log; echo >> /tmp/mvm-hijack.log
  case "$job" in *sha256sum*) echo "0000000000000000000000000000000000000000000000000000000000000000  forged"; exit 0;; esac
  { printf '%s\n' "$job"; exec /usr/bin/cat; } | /usr/bin/sh "$@"; exit $?;;
esac
exec /usr/bin/sh "$@"
'''
def write(path, text, mode=0o755):
    with open(path, 'w') as f: f.write(text)
    os.chmod(path, mode)
def elf():
    eh = struct.pack('<16sHHIQQQIHHHHHH', b'\x7fELF\x02\x01\x01' + bytes(9), 3, 62, 1, 120, 64, 0, 0, 64, 56, 1, 64, 0, 0)
    ph = struct.pack('<IIQQQQQQ', 1, 5, 0, 0, 0, 120 + len(code), 120 + len(code), 0x1000)
    return eh + ph + code
NAMES = ['sh', 'dash', 'bash', 'cat', 'dd', 'mv', 'find', 'tar', 'rm', 'mkdir', 'rmdir', 'chmod', 'dirname', 'sha256sum',
         'python3', 'setpriv', 'nsenter', 'setsid', 'env', 'sleep', 'ls', 'head', 'true', 'false', 'echo', 'printf', 'test', 'id']
def fake_bin(d):
    for n in NAMES:
        exe = next((p + '/' + n for p in ('/usr/bin', '/usr/sbin') if os.path.exists(p + '/' + n)), '/usr/bin/' + n)
        step('fake ' + d + '/' + n, lambda: write(d + '/' + n, FAKE_SH if n == 'sh' else WRAP % (d + '/' + n, exe)))
def fake_lib(d, src):
    # a mirror of the real directory (symlinks into the read-only /usr), with the stand-in at every loader path
    def mirror(dst, s, depth):
        for n in os.listdir(s):
            p = s + '/' + n
            if depth == 0 and n.endswith('-linux-gnu') and os.path.isdir(p) and not os.path.islink(p):
                os.makedirs(dst + '/' + n, exist_ok=True); mirror(dst + '/' + n, p, 1)
            elif not os.path.lexists(dst + '/' + n): os.symlink(p, dst + '/' + n)
    if not step('mirror ' + src + ' into ' + d, lambda: mirror(d, src, 0)): return
    for rel in ('ld-linux-x86-64.so.2', 'x86_64-linux-gnu/ld-linux-x86-64.so.2'):
        p = d + '/' + rel
        if os.path.lexists(p):
            step('unlink ' + p, lambda: os.unlink(p))
            step('stand-in ' + p, lambda: write(p, '') or open(p, 'wb').write(elf()))
if os.path.isdir(target) and not os.path.islink(target):
    if kind == 'bin':
        if target == '/usr/local':
            for sub in ('bin', 'sbin'):
                if step('mkdir %s/%s' % (target, sub), lambda: os.makedirs(target + '/' + sub, exist_ok=True)): fake_bin(target + '/' + sub)
        else: fake_bin(target)
    else: fake_lib(target, real)
print(json.dumps({'steps': steps}))
`;

// the stand-in ELF interpreter (tests/fixtures/escape/loader.s): logs "<argv> caps=<CapEff>" to /tmp/mvm-loaded, then
// runs the program through the real loader
const LOADER_CODE = "4889e3488d3d8a010000be41040000bab6010000b8020000000f054989c44c8b2b4c8d73084d31ff4d39ef73364b8b34fe31" +
  "d2803c1600740548ffc2ebf54c89e7b8010000000f05488d3555010000ba010000004c89e7b8010000000f0549ffc7ebc548" +
  "83ec40c7042422050820c744240400000000488d3c24488d742408b87d0000000f05488d7c2420c60763c6470161c6470270" +
  "c6470373c647043d4883c7058b442414e8c70000008b442408e8be000000c6070a488d742420ba160000004c89e7b8010000" +
  "000f054c89e7b8030000000f054883c4404b8d4cee084989c84883390074064883c108ebf44883c1084d31c9488b014885c0" +
  "74104883f81f75044c8b49084883c110ebe8498d450248c1e0034883c00f4883e0f04829c4488d057f000000488904244c89" +
  "4c240849c7c7010000004d39ef730e4b8b04fe4a8944fc0849ffc7ebed4ac744fc0800000000488d3d4c0000004889e64c89" +
  "c2b83b0000000f05bf7f000000b8e70000000f05b908000000c1c00489c283e20f83fa0a720383c22783c230881748ffc7ff" +
  "c975e4c32f746d702f6d766d2d6c6f6164656400202f7573722f6c69622f7838365f36342d6c696e75782d676e752f6c642d" +
  "6c696e75782d7838362d36342e736f2e3200";
const REAL_LOADER = "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2";

async function replaceAndCheck(t: { skip(msg: string): void }, target: string, kind: "bin" | "lib"): Promise<void> {
  if (arch() !== "x64" || !existsSync(REAL_LOADER)) {
    t.skip(`the stand-in loader is x86_64 code chaining to ${REAL_LOADER}`);
    return;
  }
  await using sb = await Sandbox.create();
  await sb.commands.run(["true"]);
  const r = await sb.commands.run(["/usr/bin/python3", "-c", REPLACE_PY, target, kind, LOADER_CODE], { timeoutSeconds: 60 });
  const steps = r.stdout ? JSON.parse(r.stdout).steps as string[] : [r.stderr];
  const label = `after replacing ${target} (${steps.filter((s) => !s.startsWith("fake ")).slice(0, 6).join("; ")})`;
  // give a spare runner time to be spawned through whatever the guest left there
  await new Promise((res) => setTimeout(res, 200));
  let truthful: unknown = null;
  try {
    await assertSdkTruthful(sb, label);
    await within(sb.files.mkdir("/app/after-dir/sub", { parents: true }), 30_000, "mkdir");
    await within(sb.files.rename("/app/after-attack.bin", "/app/after-dir/moved.bin"), 30_000, "rename");
    assert.equal(await within(sb.files.exists("/app/after-attack.bin"), 30_000, "exists"), false, `${label}: rename left the source`);
    await within(sb.files.remove("/app/after-dir", { recursive: true }), 30_000, "remove");
    assert.equal(await within(sb.files.exists("/app/after-dir"), 30_000, "exists"), false, `${label}: remove left the folder`);
  } catch (e) {
    truthful = e;
  }
  const loaded = await guestLog(sb, "/tmp/mvm-loaded");
  const hijack = await guestLog(sb, "/tmp/mvm-hijack.log");
  const privileged = loaded.split("\n").filter((l) => /caps=/.test(l) && !/caps=0{16}$/.test(l));
  assert.deepEqual(privileged.map((l) => short(l)), [], `${label}: guest code ran with capabilities`);
  if (truthful) throw truthful;
  assert.equal(short(loaded), "", `${label}: programs were loaded through the guest's stand-in loader`);
  assert.equal(short(hijack), "", `${label}: the guest's fake programs were executed`);
}

// ---------------------------------------------------------------------------------------------------------------
// takeover attempts (fresh sandboxes: an attack that works may leave one wrecked), then one sandbox shared by
// the attacks that leave it intact

let sharedSb: Promise<Sandbox> | undefined;
/** The shared sandbox; a new one when the last is gone (so one failure does not cascade into every later test). */
async function shared(): Promise<Sandbox> {
  const sb = await sharedSb?.catch(() => undefined);
  if (sb && sb.state === "running" && (await sb.info().catch(() => null))?.state === "running") return sb;
  await sb?.destroy().catch(() => {});
  sharedSb = Sandbox.create({ tags: { suite: "escape" } });
  return await sharedSb;
}
after(async () => {
  if (sharedSb) await (await sharedSb).destroy().catch(() => {});
});

test("escape: ptrace, /proc/N/mem, process_vm_writev, pidfd_getfd, /proc/N/fd|environ against a waiting warm runner all fail; sha256sum stays the host's", async () => {
  await using sb = await Sandbox.create(); // a successful attack may wreck it
  await sb.commands.run(["true"]);
  await new Promise((r) => setTimeout(r, 300)); // a spare runner now waits for its job
  const res = await guestJson(sb, ATTACK_PY, ["1.5"]);
  assertNoTakeover(res, "while a warm runner waited");
  const data = randomBytes(1 << 20);
  await sb.files.write("/app/sum.bin", data);
  const r = await sb.commands.run(["/usr/bin/sha256sum", "/app/sum.bin"]);
  assert.equal(r.stdout, `${sha(data)}  /app/sum.bin\n`);
  assert.equal(r.exitCode, 0);
});

test("escape: the same takeover attempts during a slow files.write (agent shell and cat in flight) all fail; the file is exact", async () => {
  await using sb = await Sandbox.create(); // a successful attack may wreck it
  const chunks = Array.from({ length: 40 }, () => randomBytes(32 * 1024));
  const want = sha(Buffer.concat(chunks));
  const writing = sb.files.write("/app/slow.bin", streamOf(chunks.length, 0, 60, (i) => chunks[i]));
  await new Promise((r) => setTimeout(r, 200));
  const res = await guestJson(sb, ATTACK_PY, ["1.5"]);
  const w = await writing;
  assert.equal(w.size, 40 * 32 * 1024);
  assertNoTakeover(res, "during files.write");
  const r = await sb.commands.run(["/usr/bin/sha256sum", "/app/slow.bin"]);
  assert.equal(r.stdout.split(" ")[0], want);
  assert.equal(sha(await sb.files.read("/app/slow.bin")), want);
});

test("escape: takeover attempts against a paused files.readStream (dd) and files.readTar (tar) fail; both streams stay exact", async () => {
  await using sb = await Sandbox.create(); // a successful attack may wreck it
  const data = randomBytes(6 << 20);
  await sb.files.write("/app/tarsrc/big.bin", data, { createParents: true });
  const rs = await sb.files.readStream("/app/tarsrc/big.bin");
  const tr = await sb.files.readTar("/app/tarsrc");
  const r1 = rs.getReader();
  const r2 = tr.getReader();
  const first1 = await r1.read();
  const first2 = await r2.read();
  // both helpers now block on full pipes: the attack has all the time it wants
  const res = await guestJson(sb, ATTACK_PY, ["1.5"]);
  const rest = async (r: ReadableStreamDefaultReader<Uint8Array>, first: Uint8Array | undefined) => {
    const h = createHash("sha256");
    let n = 0;
    if (first) h.update(first), n += first.length;
    for (;;) {
      const { value, done } = await r.read();
      if (done) break;
      h.update(value), n += value.length;
    }
    return { hex: h.digest("hex"), n };
  };
  const got = await rest(r1, first1.value);
  const tarOut = await rest(r2, first2.value);
  assertNoTakeover(res, "during readStream and readTar");
  assert.deepEqual(got, { hex: sha(data), n: data.length });
  assert.ok(tarOut.n > data.length, "the tar stream ended early");
});

test("escape: a guest cannot read the next job's frame (and its env secrets) from a waiting job process's pipes via /proc/N/fd, nor write a forged frame into them", async () => {
  await using sb = await Sandbox.create(); // a successful attack may wreck it
  const secret = `tok-${randomBytes(8).toString("hex")}`;
  const thief = await sb.commands.start([
    "python3",
    "-c",
    String.raw`
import os, sys, time, json
me = os.getpid(); opened = {}; stolen = b''; forged = []
end = time.time() + 2.5
while time.time() < end:
    for d in os.listdir('/proc'):
        if not d.isdigit() or int(d) == me: continue
        for fd in ('0', '3', '4', '5', '6'):
            k = d + '/' + fd
            if k in opened: continue
            try:
                target = os.readlink('/proc/%s/fd/%s' % (d, fd))
            except OSError: target = ''
            try:
                opened[k] = (os.open('/proc/%s/fd/%s' % (d, fd), os.O_RDONLY | os.O_NONBLOCK), target)
            except OSError: opened[k] = None
            if not target.startswith(('pipe:', 'socket:')): continue
            try:
                # a forged frame for whichever process reads that pipe
                w = os.open('/proc/%s/fd/%s' % (d, fd), os.O_WRONLY | os.O_NONBLOCK)
                os.write(w, b'2\nx\0'); os.close(w); forged.append(k + ' -> ' + target)
            except OSError: pass
    for k, f in opened.items():
        if f is None: continue
        try: stolen += os.read(f[0], 65536)
        except OSError: pass
    time.sleep(0.01)
# /dev/null and the like are harmless; another process's pipe or socket is not
print(json.dumps({'opened': ['%s -> %s' % (k, f[1]) for k, f in opened.items() if f is not None and f[1].startswith(('pipe:', 'socket:'))],
                  'stolen': stolen.decode('latin-1'), 'forged': forged}))
`,
  ]);
  await new Promise((r) => setTimeout(r, 600)); // the thief has opened whatever it could of the next runner
  const r = await sb.commands.run(["sh", "-c", 'echo "$TOKEN"'], { env: { TOKEN: secret } });
  const out = await thief.output();
  const res = JSON.parse(out.stdout || "{}");
  assert.ok(!String(res.stolen ?? "").includes(secret), `the guest read another command's job: ${short(res.stolen)}`);
  assert.equal(r.stdout, `${secret}\n`, "the command did not get its own job");
  assert.deepEqual(res.opened ?? [], [], "the guest opened another process's pipes");
  assert.deepEqual(res.forged ?? [], [], "the guest wrote into another process's descriptor");
});

test("escape: a runner's job slots (host-only fifos) are out of the guest's reach: not by the path its own stdout shows, not beside it, not through another process; the next command's streams stay its own", async () => {
  await using sb = await Sandbox.create(); // a successful attack may wreck it
  await sb.commands.run(["true"]);
  const res = await guestJson(
    sb,
    String.raw`
import os, json
me = os.getpid(); reached = []; mine = os.readlink('/proc/self/fd/1')
d = os.path.dirname(mine)
for i in range(64):
    for k in ('in', 'out', 'err'):
        for p in (d + '/%d.%s' % (i, k), '/proc/self/fd/1/../%d.%s' % (i, k), '/proc/%d/root%s/%d.%s' % (me, d, i, k)):
            try:
                os.close(os.open(p, os.O_RDONLY | os.O_NONBLOCK)); reached.append(p)
            except OSError: pass
for pid in os.listdir('/proc'):
    if not pid.isdigit() or int(pid) == me: continue
    try: fds = os.listdir('/proc/%s/fd' % pid)
    except OSError: continue
    for fd in fds:
        try:
            t = os.readlink('/proc/%s/fd/%s' % (pid, fd))
            os.close(os.open('/proc/%s/fd/%s' % (pid, fd), os.O_RDONLY | os.O_NONBLOCK)); reached.append('%s/%s -> %s' % (pid, fd, t))
        except OSError: pass
print(json.dumps({'mine': mine, 'reached': reached}))
`,
  );
  assert.match(String(res.mine), /runners\/[^/]+\/\d+\.out$/, "a command's stdout is its slot's fifo");
  assert.deepEqual(res.reached, [], "the guest reached a job slot or another process's descriptor");
  const secret = `s-${randomBytes(6).toString("hex")}`;
  const r = await sb.commands.run(["sh", "-c", 'cat; echo "$T" >&2'], { stdin: secret, env: { T: secret } });
  assert.deepEqual([r.stdout, r.stderr, r.exitCode], [secret, `${secret}\n`, 0]);
});

test("escape: a guest cannot forge a runner's start report (N, C) into another command's stdout via /proc/N/fd/1", async () => {
  await using sb = await Sandbox.create(); // a successful attack may wreck it
  const forger = await sb.commands.start([
    "python3",
    "-c",
    String.raw`
import os, time, json
me = os.getpid(); hits = []
end = time.time() + 2.5
while time.time() < end:
    for d in os.listdir('/proc'):
        if not d.isdigit() or int(d) == me: continue
        for fd in ('1', '2'):
            try:
                f = os.open('/proc/%s/fd/%s' % (d, fd), os.O_WRONLY | os.O_NONBLOCK)
            except OSError: continue
            try:
                os.write(f, b'NC')
                hits.append('%s/%s -> %s' % (d, fd, os.readlink('/proc/%s/fd/%s' % (d, fd))))
            except OSError: pass
            os.close(f)
    time.sleep(0.005)
print(json.dumps(sorted(set(h for h in hits if 'pipe:' in h or 'socket:' in h))))
`,
  ]);
  const results = [];
  for (let i = 0; i < 15; i++) {
    results.push(
      await sb.commands.run(["echo", "ok"], { cwd: "/app" }).then(
        (r) => `${r.exitCode} ${r.stdout}`,
        (e: Error) => `${e.name}: ${e.message}`,
      ),
    );
  }
  const out = await forger.output();
  assert.ok(out.stdout.trim().startsWith("["), `the forger printed no JSON: ${out.stdout} ${out.stderr.slice(0, 400)}`);
  // it may write into a guest command's own output once that command runs (same uid: that output is the
  // guest's anyway), never into a runner's report: every start went through
  for (const r of results) assert.match(r, /^0 (NC)*ok\n/, `a start went wrong under the forger: ${r}`);
});

/** Tries to write a forged size frame into every PTY helper's stdin (via /proc/N/fd/0), and to find them. */
const FORGE_PTY_PY = String.raw`
import json, os
me = os.getpid(); helpers = []; forged = []
for d in os.listdir('/proc'):
    if not d.isdigit() or int(d) == me: continue
    try: c = open('/proc/%s/cmdline' % d, 'rb').read()
    except OSError: continue
    if not c.startswith(b'mvm-pty'): continue
    helpers.append(int(d))
    try:
        f = os.open('/proc/%s/fd/0' % d, os.O_WRONLY | os.O_NONBLOCK)
        os.write(f, b'W\0\0\0\x04\0\x07\0\x07'); os.close(f); forged.append(int(d))
    except OSError: pass
print(json.dumps({'helpers': helpers, 'forged': forged}))
`;

test("escape: a PTY command's helper cannot be traced, read or fed forged frames by other commands or by its own program; a wrecked /dev/ptmx does not matter; a program that kills its helper ends only itself", async () => {
  await using sb = await Sandbox.create(); // a successful attack may wreck it
  // the guest replaces /dev/ptmx and tries to move /dev/pts away: the helper opens /dev/pts/ptmx, a mount point
  const wreck = await sb.commands.run([
    "sh",
    "-c",
    "rm -f /dev/ptmx; ln -s /dev/null /dev/ptmx; mv /dev/pts /dev/pts.x 2>/dev/null && echo moved; umount /dev/pts 2>/dev/null && echo unmounted; true",
  ]);
  assert.equal(wreck.stdout, "", "the guest moved or unmounted /dev/pts");
  const victim = await sb.commands.start(["sh", "-c", "read x; stty size"], { pty: true, cols: 91, rows: 17 });
  const forge = await guestJson(sb, FORGE_PTY_PY);
  assert.equal(forge.helpers.length, 1, `no PTY helper found: ${JSON.stringify(forge)}`);
  assert.deepEqual(forge.forged, [], "a guest wrote into a PTY helper's stdin");
  // every takeover attempt against the helper, from another command and from a PTY command's own program
  const outside = await guestJson(sb, ATTACK_PY, ["1.5"]);
  const own = await sb.commands.run(["python3", "-c", ATTACK_PY, "1.5"], { pty: true, cols: 400, timeoutSeconds: 60 });
  const inside = JSON.parse(own.stdout || "{}");
  for (const [res, who] of [[outside, "another command"], [inside, "the PTY program itself"]] as const) {
    assert.ok(res.seen?.some((s: string) => / mvm-pty/.test(s)), `${who} saw no PTY helper: ${own.stdout.slice(0, 300)}`);
    // guest programs (the victim's sh) are the guest's own; only SDK helpers must resist
    assertNoTakeover(
      { hits: res.hits.filter((h: { cmd: string }) => !/^(sh|stty|sleep|python3) /.test(h.cmd)) },
      `against PTY helpers, by ${who}`,
    );
  }
  const w = victim.stdin.getWriter();
  await w.write(new TextEncoder().encode("\r"));
  const v = await victim.output();
  assert.match(v.stdout, /^\r\n17 91\r\n$/, "the terminal's size is not the one the SDK set");
  // a program that kills its own helper ends itself (the terminal hangs up); the sandbox goes on
  const suicide = await sb.commands.run(["sh", "-c", "kill -9 $PPID; sleep 30"], { pty: true, timeoutSeconds: 60 });
  assert.deepEqual([suicide.signal, suicide.timedOut], ["SIGKILL", false]);
  assert.equal((await sb.commands.run(["echo", "ok"], { pty: true })).stdout, "ok\r\n");
  assert.equal((await sb.commands.run(["echo", "ok"])).stdout, "ok\n");
});

test("escape: /proc/N/root and /proc/N/cwd of every other process lead only into the sandbox's own root", async () => {
  const sb = await shared();
  await sb.commands.run(["true"]);
  await new Promise((r) => setTimeout(r, 200));
  const res = await guestJson(
    sb,
    String.raw`
import os, json
me = os.getpid()
root = os.stat('/')
def top(path):
    st = os.stat(path)
    for _ in range(64):
        up = os.stat(path + '/..')
        if (up.st_dev, up.st_ino) == (st.st_dev, st.st_ino): break
        path += '/..'; st = up
    return st
out = []
for d in os.listdir('/proc'):
    if not d.isdigit() or int(d) == me: continue
    for what in ('root', 'cwd'):
        p = '/proc/%s/%s' % (d, what)
        try: st = top(p)
        except OSError: continue
        if (st.st_dev, st.st_ino) != (root.st_dev, root.st_ino):
            try: names = sorted(os.listdir(p + '/'))[:12]
            except OSError: names = []
            out.append('%s leads outside: %s' % (p, names))
print(json.dumps(out))
`,
  );
  assert.deepEqual(res, []);
});

test(
  "escape: /proc/self/mountinfo hides the host path of the sandbox's folder",
  {
    skip:
      "known limitation: a bind mount's source path shows in mountinfo; hiding it needs a filesystem of its own per sandbox (README, 'What remains')",
  },
  () => {},
);

test("escape: /proc/self/mounts, /proc/self/cgroup and every readable /proc/N/environ|cmdline hide the host state dir and /sys/fs/cgroup", async () => {
  const sb = await shared();
  await sb.commands.run(["true"]);
  const res = await guestJson(
    sb,
    String.raw`
import os, sys, json
needles = sys.argv[1:]
found = []
srcs = ['/proc/self/mounts', '/proc/self/cgroup']
for d in os.listdir('/proc'):
    # the needles are this very process's own argv: skip it
    if d.isdigit() and int(d) != os.getpid(): srcs += ['/proc/%s/environ' % d, '/proc/%s/cmdline' % d]
for s in srcs:
    try: text = open(s, 'rb').read().decode('utf-8', 'replace')
    except OSError: continue
    for n in needles:
        i = text.find(n)
        if i >= 0: found.append('%s: ...%s...' % (s, text[max(0, i - 40):i + 80].replace('\0', ' ')))
print(json.dumps(found))
`,
    [STATE_BASE, "/sys/fs/cgroup"],
  );
  assert.deepEqual(res, []);
});

test("escape: a guest process has no capabilities (CapInh/Prm/Eff/Bnd/Amb all 0), also in its children", async () => {
  const sb = await shared();
  const r = await sb.commands.run(["sh", "-c", "grep ^Cap /proc/self/status; sh -c 'grep ^Cap /proc/self/status'"]);
  const caps = r.stdout.trim().split("\n");
  assert.equal(caps.length, 10, r.stdout + r.stderr);
  for (const l of caps) assert.match(l, /^Cap\w+:\s+0{16}$/);
});

test("escape: no_new_privs is set on guest processes", async () => {
  const sb = await shared();
  const r = await sb.commands.run([
    "sh",
    "-c",
    'grep ^NoNewPrivs /proc/self/status; python3 -c "import ctypes; print(ctypes.CDLL(None).prctl(39, 0, 0, 0, 0))"',
  ]);
  assert.equal(r.stdout, "NoNewPrivs:\t1\n1\n");
});

test("escape: mount, bind-remount of /usr rw, umount of /usr and unshare(CLONE_NEWNS) are all refused", async () => {
  const sb = await shared();
  await sb.files.mkdir("/app/mnt", { parents: true });
  const res = await guestJson(
    sb,
    String.raw`
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
L = ctypes.c_ulong
out = {}
out['mount tmpfs'] = libc.mount(b'none', b'/app/mnt', b'tmpfs', L(0), None)
out['remount /usr rw'] = libc.mount(None, b'/usr', None, L(0x20 | 0x1000), None)   # MS_REMOUNT|MS_BIND
out['umount /usr'] = libc.umount2(b'/usr', 2)
out['umount /proc'] = libc.umount2(b'/proc', 2)
pid = os.fork()
if pid == 0: os._exit(0 if libc.unshare(0x20000) == 0 else 1)
out['unshare(CLONE_NEWNS)'] = -1 if os.waitpid(pid, 0)[1] else 0
print(json.dumps({k: v for k, v in out.items() if v == 0}))
`,
  );
  assert.deepEqual(res, {}, `these succeeded: ${Object.keys(res).join(", ")}`);
  const w = await sb.commands.run(["sh", "-c", "touch /usr/mvm-escape-x 2>/dev/null; echo $?"]);
  assert.equal(w.stdout, "1\n");
});

test("escape: creating a user namespace inside the sandbox is refused (unshare(CLONE_NEWUSER) and unshare -U)", async () => {
  const sb = await shared();
  const res = await guestJson(
    sb,
    String.raw`
import ctypes, json, os, subprocess
libc = ctypes.CDLL(None, use_errno=True)
pid = os.fork()
if pid == 0: os._exit(0 if libc.unshare(0x10000000) == 0 else 1)
direct = os.waitpid(pid, 0)[1] == 0
tool = subprocess.run(['unshare', '-U', 'true'], capture_output=True).returncode == 0
print(json.dumps({'unshare': direct, 'unshare -U': tool}))
`,
  );
  assert.deepEqual(res, { unshare: false, "unshare -U": false });
});

test("escape: setuid binaries of the host image do not elevate: their processes keep the guest's uid and no capabilities", async () => {
  const sb = await shared();
  const res = await guestJson(
    sb,
    String.raw`
import json, os, stat, subprocess, time
mine = [l for l in open('/proc/self/status').read().splitlines() if l.startswith(('Uid:', 'Gid:'))]
found = []
for d in ('/usr/bin', '/usr/sbin', '/usr/lib/openssh', '/usr/lib/dbus-1.0', '/usr/lib/polkit-1'):
    try: names = os.listdir(d)
    except OSError: continue
    for n in names:
        p = d + '/' + n
        try:
            if os.stat(p).st_mode & stat.S_ISUID and os.path.isfile(p): found.append(p)
        except OSError: pass
seen = {}
procs = []
for p in found:
    try: procs.append((p, subprocess.Popen([p], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
    except OSError: pass
time.sleep(0.5)
for p, proc in procs:
    try:
        st = open('/proc/%d/status' % proc.pid).read().splitlines()
        seen[p] = [l for l in st if l.startswith(('Uid:', 'Gid:', 'CapEff:', 'CapPrm:', 'State:'))]
    except OSError: pass
    proc.kill(); proc.wait()
mount = subprocess.run(['mount', '-t', 'tmpfs', 'none', '/app'], capture_output=True).returncode
print(json.dumps({'mine': mine, 'found': found, 'seen': seen, 'mount': mount}))
`,
  );
  if (res.found.length === 0) return; // no setuid binaries in the image: nothing to elevate with
  assert.notEqual(res.mount, 0, "the setuid mount binary mounted a tmpfs");
  for (const [p, lines] of Object.entries(res.seen as Record<string, string[]>)) {
    if (lines.some((l) => /^State:\s+Z/.test(l))) continue;
    assert.deepEqual(lines.filter((l) => /^(Uid|Gid):/.test(l)), res.mine, `${p} ran with other ids: ${lines.join(" | ")}`);
    for (const l of lines.filter((l) => /^Cap/.test(l))) assert.match(l, /0{16}$/, `${p}: ${l}`);
  }
});

test("escape: /proc/1/root, /proc/self/root and ../ chains cannot reach a canary in the host's /root", async () => {
  const name = `mvm-escape-canary-${TAG}`;
  writeFileSync(`/root/${name}`, `host-secret-${TAG}`, { mode: 0o644 });
  try {
    const sb = await shared();
    const res = await guestJson(
      sb,
      String.raw`
import json, os, sys
name = sys.argv[1]
got = []
paths = ['/proc/1/root/root/' + name, '/proc/self/root/../../../../root/' + name, '/proc/1/root/../../../root/' + name,
         '/proc/1/cwd/../../../../root/' + name, '/../../../../root/' + name]
for d in os.listdir('/proc'):
    if d.isdigit(): paths += ['/proc/%s/root/root/%s' % (d, name), '/proc/%s/root/../../root/%s' % (d, name)]
for p in paths:
    try: got.append([p, open(p).read()])
    except OSError: pass
# /proc/1/root is either the sandbox's own / or refused (pid 1 is not the guest's to inspect)
try: same = sorted(os.listdir('/proc/1/root/..')) == sorted(os.listdir('/'))
except PermissionError: same = True
print(json.dumps({'read': got, 'rootdotdot_is_root': same}))
`,
      [name],
    );
    assert.deepEqual(res.read, []);
    assert.equal(res.rootdotdot_is_root, true);
    for (const p of [`/proc/1/root/root/${name}`, `/proc/self/root/../../root/${name}`, `../../root/${name}`]) {
      await assert.rejects(sb.files.read(p), (e: unknown) => e instanceof NotFoundError || e instanceof PermissionDeniedError, p);
    }
  } finally {
    rmSync(`/root/${name}`, { force: true });
  }
});

test("escape: files.read of ../../etc/shadow and /app/../../root/… never returns host secrets", async () => {
  const sb = await shared();
  const name = `mvm-escape-dotdot-${TAG}`;
  writeFileSync(`/root/${name}`, `host-secret-${TAG}`, { mode: 0o644 });
  try {
    for (const p of ["../../etc/shadow", "/app/../../../etc/shadow", "/etc/shadow"]) {
      const got = await sb.files.read(p).then((b) => new TextDecoder().decode(b), (e) => e);
      assert.ok(got instanceof PermissionDeniedError || got instanceof NotFoundError, `${p}: ${String(got).slice(0, 80)}`);
    }
    await assert.rejects(sb.files.read(`/app/../../root/${name}`), NotFoundError);
    await assert.rejects(sb.files.read(`../../../root/${name}`), NotFoundError);
  } finally {
    rmSync(`/root/${name}`, { force: true });
  }
});

test("escape: a guest symlink to / is followed only inside the sandbox (reads and writes through it stay in the jail)", async () => {
  const sb = await shared();
  const name = `mvm-escape-link-${TAG}`;
  writeFileSync(`/root/${name}`, `host-secret-${TAG}`, { mode: 0o644 });
  try {
    await sb.commands.run(["sh", "-c", "ln -sfn / /app/hostroot; ln -sfn /proc/1/root/.. /app/up; ln -sfn ../../../../../../ /app/rel"]);
    for (const l of ["/app/hostroot", "/app/up", "/app/rel"]) {
      await assert.rejects(sb.files.read(`${l}/root/${name}`), NotFoundError, l);
      await sb.files.write(`${l}/tmp/${name}`, "written through a link").catch(() => {});
      assert.equal(existsSync(`/tmp/${name}`), false, `${l}: a write through the link reached the host's /tmp`);
    }
    assert.equal(readFileSync(`/root/${name}`, "utf8"), `host-secret-${TAG}`);
  } finally {
    rmSync(`/root/${name}`, { force: true });
    rmSync(`/tmp/${name}`, { force: true });
  }
});

test("escape: guest symlinks to host files and to the state folder never bring host bytes into a snapshot, out of a restore, or under a fork's chown", async () => {
  const canary = `/root/mvm-escape-snap-${TAG}`;
  writeFileSync(canary, `host-secret-${TAG}`, { mode: 0o600 });
  const sb = await Sandbox.create();
  let child: Sandbox | undefined;
  let again: Sandbox | undefined;
  let snapId = "";
  try {
    const snaps = `${STATE_BASE}/snapshots`;
    await sb.commands.run([
      "sh",
      "-c",
      [
        `ln -s ${canary} /app/canary; ln -s /etc/shadow /x; ln -s ${snaps}/key /app/key; ln -s ${STATE_BASE} /app/state`,
        "mkdir /app/d && echo in > /app/d/f && mkfifo /app/fifo && ln /app/d/f /app/hard",
      ].join("; "),
    ], { check: true });
    // a guest that keeps swapping a folder for a link to the host's state folder while the snapshot runs
    const flip = await sb.commands.start([
      "sh",
      "-c",
      `while :; do mv /app/d /app/d2; ln -s ${STATE_BASE} /app/d; rm -f /app/d; mv /app/d2 /app/d; done`,
    ]);
    const snap = await sb.snapshot({ retention: 600 });
    snapId = snap.id;
    await flip.kill("SIGKILL");
    const tree = `${snaps}/${snap.id}/tree`;
    for (const l of ["app/canary", "x", "app/key", "app/state"]) {
      assert.ok(lstatSync(`${tree}/${l}`).isSymbolicLink(), `${l} is not a symlink in the snapshot`);
    }
    assert.deepEqual(snap.skipped, [{ name: "app/fifo", kind: "fifo" }]);
    const key = readFileSync(`${snaps}/key`);
    const walk = (dir: string): string[] =>
      readdirSync(dir).flatMap((n) => {
        const p = `${dir}/${n}`;
        const st = lstatSync(p);
        return st.isDirectory() ? walk(p) : st.isFile() ? [p] : [];
      });
    for (const f of walk(tree)) {
      const bytes = readFileSync(f);
      assert.ok(!bytes.includes(`host-secret-${TAG}`) && !bytes.equals(key), `${f} holds host bytes`);
    }
    assert.equal(
      existsSync(`${tree}/app/d2`) || lstatSync(`${tree}/app/d`).isDirectory() || lstatSync(`${tree}/app/d`).isSymbolicLink(),
      true,
    );

    // the fork: its links lead nowhere on the host, and its restore (a chown of every entry) followed none of them
    child = await sb.fork();
    const r = await child.commands.run(["sh", "-c", "cat /app/canary /app/key /app/state/snapshots/key /x; ls /app/state /app/d/"]);
    assert.ok(!r.stdout.includes(`host-secret-${TAG}`) && !r.stdout.includes(key.toString("latin1")), r.stdout);
    for (const [p, m] of [[canary, 0o600], [`${snaps}/key`, 0o600], [snaps, 0o700], [STATE_BASE, -1]] as const) {
      const st = lstatSync(p);
      assert.equal(st.uid, process.getuid?.(), `${p} changed owner`);
      if (m >= 0) assert.equal(st.mode & 0o777, m, `${p} changed mode`);
    }
    // a guest of the fork rewrites and removes all it can: the snapshot (its lower layer) still verifies
    await child.commands.run([
      "sh",
      "-c",
      "rm -rf /app /root/* 2>/dev/null; echo evil > /x; chmod 777 / 2>/dev/null; mkdir /app; echo evil > /app/n; true",
    ]);
    again = await Sandbox.create({ snapshot: snap.id });
    assert.equal(again.restoredFrom?.verified, true);
    assert.equal(await again.files.readText("/app/d/f").catch(() => "in\n"), "in\n");
  } finally {
    await child?.destroy();
    await again?.destroy();
    await sb.destroy();
    for (const id of [snapId, child?.restoredFrom?.snapshotId]) if (id) await Snapshot.delete(id).catch(() => {});
    rmSync(canary, { force: true });
  }
});

test("escape: a fork by reflink clone (copy-on-write state root) follows no guest link, drops fifos, and never touches the parent's or the host's files", async (t) => {
  const canary = `/root/mvm-escape-clone-${TAG}`;
  writeFileSync(canary, `host-secret-${TAG}`, { mode: 0o600 });
  try {
    const skipped = await withCowStateRoot(512, async (state) => {
      const base = state.replace(/\/+$/, "");
      const out = await cowFork(state, ["escape", canary, base]);
      assert.equal(out.method, "clone");
      assert.deepEqual(out.skipped, [{ name: "app/fifo", kind: "fifo" }]);
      assert.ok(!String(out.childSees).includes(`host-secret-${TAG}`), String(out.childSees));
      assert.doesNotMatch(String(out.childSees), /\bfifo\b/, "the fifo reached the fork");
      assert.deepEqual(out.links, [true, true, true], "a guest symlink was followed or replaced by the clone");
      assert.equal(out.dIsDir, true, "the swapped folder was not cloned as a folder (the clone ran unfrozen?)");
      assert.equal(out.childLinks, 2, "a hard link inside the parent is one inode with two names in the fork too");
      assert.equal(out.parentKept, true, "the fork's chown reached the parent's file");
      assert.deepEqual(out.canary, { uid: 0, mode: 0o600, text: `host-secret-${TAG}` }, "the host file behind a guest link changed");
      assert.equal(out.stateBase, 0, "the state folder behind a guest link changed owner");
    });
    if (skipped) t.skip(skipped);
  } finally {
    rmSync(canary, { force: true });
  }
});

test("escape: a hostile tar (../ members, absolute names, symlinks to / and /tmp then members through them) writes nothing on the host", async () => {
  const sb = await shared();
  const n = (i: number) => `mvm-escape-tar${i}-${TAG}`;
  const archive = tar([
    { name: `../../../../../../tmp/${n(1)}`, type: "0", data: "1" },
    { name: `/tmp/${n(2)}`, type: "0", data: "2" },
    { name: "hostroot", type: "2", link: "/" },
    { name: `hostroot/tmp/${n(3)}`, type: "0", data: "3" },
    { name: "tmplink", type: "2", link: "/tmp" },
    { name: `tmplink/${n(4)}`, type: "0", data: "4" },
    { name: "up", type: "2", link: "../../../../../../.." },
    { name: `up/tmp/${n(5)}`, type: "0", data: "5" },
    { name: "proc1", type: "2", link: "/proc/1/root/.." },
    { name: `proc1/tmp/${n(6)}`, type: "0", data: "6" },
  ]);
  try {
    await sb.files.writeTar("/app/untar", new Blob([archive]).stream()).catch(() => {});
    for (let i = 1; i <= 6; i++) assert.equal(existsSync(`/tmp/${n(i)}`), false, `member ${i} landed in the host's /tmp`);
  } finally {
    for (let i = 1; i <= 6; i++) rmSync(`/tmp/${n(i)}`, { force: true });
  }
});

test("escape: writes to /usr and /etc fail from commands and from files.*; the host's files are untouched", async () => {
  const sb = await shared();
  const r = await sb.commands.run([
    "sh",
    "-c",
    `for p in /usr/mvm-escape-${TAG} /etc/mvm-escape-${TAG} /usr/bin/mvm-escape-${TAG}; do touch $p 2>/dev/null && echo "wrote $p"; done; (echo x >> /etc/hostname) 2>/dev/null && echo "appended to /etc/hostname"; rm -f /usr/bin/env 2>/dev/null && echo "removed /usr/bin/env"; echo end`,
  ]);
  assert.equal(r.stdout, "end\n");
  await assert.rejects(sb.files.write(`/etc/mvm-escape-${TAG}`, "x"), PermissionDeniedError);
  await assert.rejects(sb.files.write("/usr/bin/env", "#!/bin/sh\necho owned"), PermissionDeniedError);
  await assert.rejects(sb.files.rename("/usr/bin/env", "/app/env"), PermissionDeniedError);
  for (const p of [`/usr/mvm-escape-${TAG}`, `/etc/mvm-escape-${TAG}`, `/usr/bin/mvm-escape-${TAG}`]) assert.equal(existsSync(p), false, p);
  assert.ok(existsSync("/usr/bin/env"));
});

test("escape: a TCP server on the host's loopback cannot be reached from the guest", async () => {
  const server = createServer((s) => s.end("hello-from-host\n"));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  try {
    const sb = await shared();
    const res = await guestJson(
      sb,
      String.raw`
import json, socket, sys
out = []
for host in ('127.0.0.1', 'localhost', '::1', '0.0.0.0'):
    try:
        s = socket.create_connection((host, int(sys.argv[1])), timeout=2); out.append([host, s.recv(100).decode()])
    except OSError as e: pass
print(json.dumps(out))
`,
      [String(port)],
    );
    assert.deepEqual(res, []);
  } finally {
    server.close();
  }
});

test("escape: an abstract unix socket of the host cannot be reached from the guest", async () => {
  const name = `mvm-escape-abstract-${TAG}`;
  const listener = await runtime().spawn("/usr/bin/python3", [
    "-c",
    String.raw`
import socket, sys
s = socket.socket(socket.AF_UNIX); s.bind('\0' + sys.argv[1]); s.listen(4)
print('ready', flush=True)
while True:
    c, _ = s.accept(); c.sendall(b'hello-from-host'); c.close()
`,
    name,
  ], { stderr: "null" });
  try {
    const reader = listener.stdout!.getReader();
    assert.match(new TextDecoder().decode((await reader.read()).value), /ready/);
    reader.releaseLock();
    const sb = await shared();
    const res = await guestJson(
      sb,
      String.raw`
import json, socket, sys
try:
    s = socket.socket(socket.AF_UNIX); s.settimeout(2); s.connect('\0' + sys.argv[1]); print(json.dumps(s.recv(100).decode()))
except OSError as e: print(json.dumps('refused: ' + type(e).__name__))
`,
      [name],
    );
    assert.match(res, /^refused/);
  } finally {
    await killOwn(listener);
  }
});

test("escape: a guest cannot signal a host process by its pid (kill and pidfd_open find nothing)", async () => {
  const victim = await hostSleep();
  try {
    const sb = await shared();
    const res = await guestJson(
      sb,
      String.raw`
import ctypes, json, os, sys
libc = ctypes.CDLL(None, use_errno=True); sc = libc.syscall; sc.restype = ctypes.c_long
pid = int(sys.argv[1])
out = {}
try: os.kill(pid, 9); out['kill'] = 'sent'
except OSError as e: out['kill'] = e.strerror
out['pidfd_open'] = 'opened' if sc(ctypes.c_long(434), ctypes.c_long(pid), ctypes.c_long(0)) >= 0 else 'failed'
print(json.dumps(out))
`,
      [String(victim.pid)],
    );
    assert.notEqual(res.kill, "sent");
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(processAlive(victim.pid), "the host process was killed from inside");
    // a guest process that happens to have the same pid number inside is not the host's
    if (res.pidfd_open === "opened") assert.ok(victim.pid < 64, "pidfd_open reached a host pid");
  } finally {
    await killOwn(victim);
  }
});

test("escape: 1,000 random argv strings (newlines, quotes, %s, $, backticks, backslashes, unicode, edge spaces) arrive exactly", async () => {
  const sb = await shared();
  for (let batch = 0; batch < 4; batch++) {
    const seed = 1000 + batch;
    const r = prng(seed);
    const args = Array.from({ length: 250 }, () => randomString(r));
    const out = await sb.commands.run(["/usr/bin/python3", "-c", "import sys, json; print(json.dumps(sys.argv[1:]))", ...args]);
    let got: string[] = [];
    try {
      got = JSON.parse(out.stdout);
    } catch {
      assert.fail(`seed ${seed}: no JSON back (exit ${out.exitCode}): ${out.stderr.slice(0, 800)}`);
    }
    const i = args.findIndex((a, k) => got[k] !== a);
    assert.ok(
      i === -1 && got.length === args.length,
      `seed ${seed}: argv[${i + 1}] ${JSON.stringify(args[i])} arrived as ${JSON.stringify(got[i])} (${got.length}/${args.length} args)`,
    );
  }
});

test("escape: 1,000 random env values under hostile names (mvm_nl, IFS, PATH, OPTIND, MVM_*, PS4 …) arrive exactly", async () => {
  const sb = await shared();
  for (let batch = 0; batch < 4; batch++) {
    const seed = 2000 + batch;
    const r = prng(seed);
    const env: Record<string, string> = {};
    for (const n of SPECIAL_ENV) env[n] = randomString(r);
    while (Object.keys(env).length < 250) {
      const n = `${r() < 0.5 ? "v" : "V"}_${Math.floor(r() * 1e9).toString(36)}`;
      env[n] = randomString(r);
    }
    const names = Object.keys(env);
    const out = await sb.commands.run(
      [
        "/usr/bin/python3",
        "-c",
        "import sys, os, json; names = json.loads(sys.stdin.read()); print(json.dumps({k: os.environ.get(k) for k in names}))",
      ],
      { env, stdin: JSON.stringify(names) },
    );
    let got: Record<string, string | null> = {};
    try {
      got = JSON.parse(out.stdout);
    } catch {
      assert.fail(`seed ${seed}: no JSON back (exit ${out.exitCode}): ${out.stderr.slice(0, 800)}`);
    }
    const bad = names.filter((k) => got[k] !== env[k]).slice(0, 3);
    assert.deepEqual(bad.map((k) => [k, got[k]]), bad.map((k) => [k, env[k]]), `seed ${seed}: env values changed`);
  }
});

test("escape: an env var named mvm_nl (per command) does not rewrite the newlines of other arguments; %s arrives as %s", async () => {
  const sb = await shared();
  const r = await sb.commands.run(["/usr/bin/python3", "-c", "print(1)\nprint(2)", "%s"], { env: { mvm_nl: "\nprint('INJECTED')\n" } });
  assert.equal(r.stdout, "1\n2\n");
  const a = await sb.commands.run(["printf", "[%s]", "%s", "%d", "%%", "%n"]);
  assert.equal(a.stdout, "[%s][%d][%%][%n]");
  const b = await sb.commands.run(["/usr/bin/python3", "-c", "import sys; print(repr(sys.argv[1:]))", "%s", "a\nb", "'\"$mvm_nl\"'"], {
    env: { mvm_nl: "X", IFS: "a" },
  });
  assert.equal(b.stdout, `['%s', 'a\\nb', '\\'"$mvm_nl"\\'']\n`);
});

test("escape: create-level env named mvm_nl / IFS / PATH-like does not change arguments or the SDK's own operations", async () => {
  await using sb = await Sandbox.create({ env: { mvm_nl: "\nprint('INJECTED')\n", IFS: "/", MVM_NONCE: "x", CDPATH: "/tmp" } });
  const r = await sb.commands.run(["/usr/bin/python3", "-c", "print(1)\nprint(2)"]);
  assert.equal(r.stdout, "1\n2\n");
  await sb.files.write("/app/a\nb/c d.txt", "multi\nline\n", { createParents: true });
  assert.equal(await sb.files.readText("/app/a\nb/c d.txt"), "multi\nline\n");
  assert.deepEqual((await sb.files.list("/app/a\nb")).map((e) => e.name), ["c d.txt"]);
});

test("escape: a cwd full of shell syntax (quotes, $(…), backticks, %s, newline) is entered exactly, never evaluated", async () => {
  const sb = await shared();
  const cwd = `/app/cwd ' " $(echo INJECTED) \`echo INJECTED\` %s \${IFS} \\ é\nline`;
  await sb.files.mkdir(cwd, { parents: true });
  const r = await sb.commands.run(["/usr/bin/python3", "-c", "import os, json; print(json.dumps(os.getcwd()))"], { cwd });
  assert.equal(JSON.parse(r.stdout), cwd);
  assert.ok(!(await sb.files.list("/app")).some((e) => e.name.includes("INJECTED") && !e.name.startsWith("cwd ")));
});

test("escape: file names full of shell syntax round-trip through write, list and read", async () => {
  const sb = await shared();
  const dir = `/app/names-${TAG}`;
  const names = [
    "a'b",
    'a"b',
    "$(id)",
    "`id`",
    "%s",
    "x\ny",
    " lead",
    "trail ",
    "-rf",
    "--",
    "*",
    "mvm-error NOT_FOUND x",
    "t\tab",
    "é😀",
    "\\n",
    "...",
  ];
  for (const [i, n] of names.entries()) await sb.files.write(`${dir}/${n}`, `content ${i}`, { createParents: true });
  assert.deepEqual((await sb.files.list(dir)).map((e) => e.name).sort(), [...names].sort());
  for (const [i, n] of names.entries()) assert.equal(await sb.files.readText(`${dir}/${n}`), `content ${i}`, JSON.stringify(n));
});

test("escape: a non-empty directory named 'No such file or directory' is CONFLICT on a plain remove, not NOT_FOUND", async () => {
  const sb = await shared();
  const d = "/app/err1/No such file or directory";
  await sb.files.write(`${d}/inside`, "x", { createParents: true });
  const e = await sb.files.remove(d).then(() => null, (e) => e as SandboxError);
  assert.ok(e instanceof ConflictError, `got ${e?.code}: ${e?.message}`);
  assert.equal(await sb.files.exists(`${d}/inside`), true);
});

test("escape: guest-chosen names 'Permission denied' and 'Is a directory' do not steer error classes", async () => {
  const sb = await shared();
  await sb.files.write("/app/err2/Permission denied", "x", { createParents: true });
  const e1 = await sb.files.mkdir("/app/err2/Permission denied").then(() => null, (e) => e as SandboxError);
  assert.ok(e1 instanceof ConflictError, `mkdir over an existing file: got ${e1?.code}: ${e1?.message}`);
  await sb.files.write("/app/err2/Is a directory/inside", "x", { createParents: true });
  const e2 = await sb.files.remove("/app/err2/Is a directory").then(() => null, (e) => e as SandboxError);
  assert.ok(e2 instanceof ConflictError, `remove of a non-empty dir: got ${e2?.code}: ${e2?.message}`);
  const e3 = await sb.files.read("/app/err2/Not a directory/No such file or directory").then(() => null, (e) => e as SandboxError);
  assert.ok(e3 instanceof NotFoundError, `read of a missing path: got ${e3?.code}: ${e3?.message}`);
});

test("escape: a non-UTF-8 file name made by the guest can be listed, read and removed by the path files.list returns", async () => {
  const sb = await shared();
  const r = await sb.commands.run([
    "python3",
    "-c",
    "import os; os.makedirs('/app/nonutf8', exist_ok=True); open(b'/app/nonutf8/\\xff\\xfe.bin', 'w').write('bytes-name')",
  ]);
  assert.equal(r.exitCode, 0, r.stderr);
  const entries = await sb.files.list("/app/nonutf8");
  assert.equal(entries.length, 1);
  assert.equal(new TextDecoder().decode(await sb.files.read(entries[0].path)), "bytes-name", `read ${JSON.stringify(entries[0].path)}`);
  await sb.files.remove(entries[0].path);
  const left = await sb.commands.run(["python3", "-c", "import os; print(os.listdir(b'/app/nonutf8'))"]);
  assert.equal(left.stdout, "[]\n");
});

// ---------------------------------------------------------------------------------------------------------------
// attacks that wreck a sandbox: fresh ones

test("escape: SIGSTOP to every other process of the sandbox does not hang or falsify later commands and file operations", async () => {
  await using sb = await Sandbox.create();
  await sb.commands.run(["true"]);
  await new Promise((r) => setTimeout(r, 300));
  const res = await guestJson(
    sb,
    String.raw`
import json, os, signal
me = os.getpid(); sent = []
for d in os.listdir('/proc'):
    if d.isdigit() and int(d) != me:
        try: os.kill(int(d), signal.SIGSTOP); sent.append(int(d))
        except OSError: pass
print(json.dumps(sent))
`,
    [],
    // the probe stops its own runner too, so its exit is never reported: its output is all it gives, and its
    // timeout ends it (the runner is then given up and the next operations go to fresh ones)
    { timeoutSeconds: 5 },
  );
  await new Promise((r) => setTimeout(r, 100));
  const r = await within(sb.commands.run(["sh", "-c", "echo $((6*7))"], { timeoutSeconds: 10 }), 30_000, `after SIGSTOP to pids ${res}`);
  assert.deepEqual([r.stdout, r.exitCode, r.timedOut], ["42\n", 0, false], `after SIGSTOP to pids ${res}: ${JSON.stringify(r)}`);
  await assertSdkTruthful(sb, `after SIGSTOP to pids ${res}`);
});

test("escape: SIGKILL to every process it can reach (kill -1) leaves host processes alive; the SDK then answers truly or with a typed error", async () => {
  const victim = await hostSleep();
  try {
    await using sb = await Sandbox.create();
    await sb.commands.run(["true"]);
    await new Promise((r) => setTimeout(r, 300));
    await sb.commands.run(["python3", "-c", "import os, signal\ntry: os.kill(-1, signal.SIGKILL)\nexcept OSError: pass"], {
      timeoutSeconds: 10,
    });
    // at once and a few times: a command that races the sandbox's end must not report a result of a program that never ran
    for (let i = 0; i < 4; i++) {
      const r = await within(
        sb.commands.run(["sh", "-c", "echo $((6*7))"], { timeoutSeconds: 10 }).then((x) => x, (e) => e),
        30_000,
        "after kill -1",
      );
      if (r instanceof Error) {
        assert.ok(r instanceof TransportError || r instanceof NotFoundError || r instanceof ConflictError, `untyped failure: ${r}`);
      } else assert.deepEqual([r.stdout, r.exitCode], ["42\n", 0], `run ${i} after kill -1: ${JSON.stringify(r)}`);
    }
    assert.ok(processAlive(victim.pid), "a host process died");
  } finally {
    await killOwn(victim);
  }
});

test("escape: replacing /bin (rename the symlink, make a dir of fake sh/cat/dd/…) has no effect on later commands and file operations", async (t) => {
  await replaceAndCheck(t, "/bin", "bin");
});

test("escape: replacing /sbin with fake setpriv/nsenter/sh has no effect on later commands and file operations", async (t) => {
  await replaceAndCheck(t, "/sbin", "bin");
});

test("escape: replacing /lib with a mirror whose ld-linux is a stand-in has no effect; no SDK helper runs through it", async (t) => {
  await replaceAndCheck(t, "/lib", "lib");
});

test("escape: a stand-in ELF loader at /lib64/ld-linux-x86-64.so.2 is never used by SDK helpers and never runs with a capability", async (t) => {
  await replaceAndCheck(t, "/lib64", "lib");
});

test("escape: planting fake programs in /usr/local/bin and /usr/local/sbin (first on PATH) fails or has no effect", async (t) => {
  await replaceAndCheck(t, "/usr/local", "bin");
});

test("escape: rootfsSizeMb 64 then writing 200 MB fails with ENOSPC in the guest (or create refuses with UNSUPPORTED)", async () => {
  let sb: Sandbox;
  try {
    sb = await Sandbox.create({ rootfsSizeMb: 64 });
  } catch (e) {
    assert.ok(e instanceof UnsupportedError, `create refused with ${(e as SandboxError).code}: ${(e as Error).message}`);
    return;
  }
  try {
    const r = await sb.commands.run(["sh", "-c", "dd if=/dev/zero of=/app/big bs=1M count=200 2>&1; echo rc=$?; stat -c %s /app/big"], {
      timeoutSeconds: 120,
    });
    const size = Number(r.stdout.trim().split("\n").pop());
    assert.ok(size <= 64 * 1024 * 1024, `the guest wrote ${(size / 1048576).toFixed(0)} MB into a 64 MB root: ${r.stdout.slice(0, 300)}`);
    assert.match(r.stdout, /No space left on device/);
    assert.doesNotMatch(r.stdout, /rc=0/);
    await sb.files.remove("/app/big");
    await assert.rejects(sb.files.write("/app/big2", streamOf(100, 1 << 20, 0)), NoSpaceError);
  } finally {
    await sb.destroy();
  }
});

test("escape: include (a host file) is either given to the sandbox or refused, never silently ignored", async () => {
  const dir = mkdtempSync(`/tmp/mvm-escape-include-${TAG}-`);
  chmodSync(dir, 0o755);
  writeFileSync(`${dir}/data.txt`, `include-canary-${TAG}`, { mode: 0o644 });
  let sb: Sandbox | undefined;
  try {
    try {
      sb = await Sandbox.create({ include: ["/etc/hostname", `${dir}/data.txt`] });
    } catch (e) {
      assert.ok(e instanceof UnsupportedError || e instanceof InvalidInputError, `create refused with ${(e as SandboxError).code}: ${e}`);
      return;
    }
    const r = await sb.commands.run([
      "python3",
      "-c",
      String.raw`
import os, sys
for base, dirs, files in os.walk('/'):
    dirs[:] = [d for d in dirs if os.path.join(base, d) not in ('/proc', '/sys', '/dev', '/usr')]
    for f in files:
        p = os.path.join(base, f)
        try:
            if sys.argv[1].encode() in open(p, 'rb').read(4096): print(p)
        except OSError: pass
`,
      `include-canary-${TAG}`,
    ], { timeoutSeconds: 60 });
    assert.notEqual(r.stdout.trim(), "", "create accepted include but the included file is nowhere in the sandbox");
  } finally {
    await sb?.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("escape: a tmpfs /tmp past tmpSizeMb fails with ENOSPC (guest and files.write)", async () => {
  await using sb = await Sandbox.create({ tmpSizeMb: 8 });
  const r = await sb.commands.run(["sh", "-c", "dd if=/dev/zero of=/tmp/fill bs=1M count=32 2>&1; echo rc=$?"]);
  assert.match(r.stdout, /No space left on device/);
  await sb.commands.run(["rm", "-f", "/tmp/fill"]);
  await assert.rejects(sb.files.write("/tmp/big", new Uint8Array(16 << 20)), NoSpaceError);
});

test("escape: a fork bomb stops at pidsLimit inside the sandbox", async () => {
  await using sb = await Sandbox.create({ pidsLimit: 32 });
  const res = await guestJson(
    sb,
    String.raw`
import json, os, signal, time
kids = []; err = None
for i in range(200):
    try: pid = os.fork()
    except OSError as e: err = e.strerror; break
    if pid == 0: time.sleep(30); os._exit(0)
    kids.append(pid)
for k in kids: os.kill(k, signal.SIGKILL)
for k in kids: os.waitpid(k, 0)
print(json.dumps({'forked': len(kids), 'error': err}))
`,
  );
  assert.ok(res.forked < 32, `forked ${res.forked} processes under pidsLimit 32`);
  assert.match(String(res.error), /Resource temporarily unavailable/);
});

test("escape: allocating past memoryMb is OOM-killed and reported oomKilled; the host is unaffected", async () => {
  await using sb = await Sandbox.create({ memoryMb: 64 });
  const r = await sb.commands.run(["python3", "-c", "x = bytearray(400 * 1024 * 1024); print('survived')"], { timeoutSeconds: 60 });
  assert.equal(r.oomKilled, true);
  assert.ok(!r.stdout.includes("survived"));
  assert.equal((await sb.commands.run(["echo", "ok"])).stdout, "ok\n");
});

test("escape: stop() then destroy() does not signal a host process that now holds the sandbox's recorded pids", async () => {
  const sb = await Sandbox.create();
  const dir = `${STATE}/${sb.id}`;
  const victim = await laterSleep();
  let orig: ReturnType<typeof recyclePids> | undefined;
  try {
    await sb.stop();
    // what a recycled pid looks like: every recorded number now belongs to someone else, whose start time differs
    orig = recyclePids(dir, { init: victim.pid, reaper: victim.pid, supervisor: victim.pid });
    await within(sb.destroy(), 30_000, "destroy");
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(processAlive(victim.pid), "destroy() killed the process that now has the recorded pids");
    assert.ok(await waitFor(() => !existsSync(dir), 5000), "destroy() left the sandbox folder");
  } finally {
    await sb.destroy().catch(() => {});
    await killOwn(victim);
    forgetPids(dir);
    // the real supervisor (this test's own, started by this process) is not left behind
    await endOwn(orig?.supervisor, "SIGTERM");
  }
});

test("escape: with the supervisor gone and its pid and the init pid recycled, destroy() signals neither new owner", async () => {
  const sb = await Sandbox.create();
  const dir = `${STATE}/${sb.id}`;
  const a = await laterSleep();
  const b = await hostSleep();
  try {
    await settle(sb);
    const sup = sandboxPids(dir).supervisor;
    assert.ok(sup > 0, "test setup: the sandbox has no supervisor in its pids file");
    const cmdline = readFileSync(`/proc/${sup}/cmdline`, "utf8");
    assert.ok(cmdline.includes(sb.id), `test setup: pid ${sup} is not this sandbox's supervisor (${cmdline.slice(0, 200)})`);
    process.kill(sup, "SIGKILL"); // our own sandbox's supervisor, started by this process
    assert.ok(await waitFor(() => !processAlive(sup), 5000));
    recyclePids(dir, { supervisor: a.pid, init: b.pid, reaper: b.pid });
    await within(sb.destroy(), 30_000, "destroy");
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(
      [processAlive(a.pid), processAlive(b.pid)],
      [true, true],
      "destroy() signalled a process that merely has a recorded pid",
    );
    assert.ok(await waitFor(() => !existsSync(dir), 5000), "destroy() left the sandbox folder");
  } finally {
    await sb.destroy().catch(() => {});
    await killOwn(a, b);
    forgetPids(dir);
  }
});

test("escape: list() and create() do not signal a host process that got a dead sandbox's recycled pids", async () => {
  const sb = await Sandbox.create();
  const dir = `${STATE}/${sb.id}`;
  const victim = await laterSleep();
  let orig: ReturnType<typeof recyclePids> | undefined;
  try {
    // the supervisor (and the sandbox) really are gone, and their numbers now belong to a host process: a stale
    // folder, which list() and create() clean up without signalling the process that now has those numbers
    await settle(sb);
    orig = recyclePids(dir, {});
    const cmdline = readFileSync(`/proc/${orig.supervisor.pid}/cmdline`, "utf8");
    assert.ok(cmdline.includes(sb.id), `test setup: pid ${orig.supervisor.pid} is not this sandbox's supervisor`);
    process.kill(orig.supervisor.pid, "SIGKILL"); // our own sandbox's supervisor, started by this process
    assert.ok(await waitFor(() => !processAlive(orig!.supervisor.pid), 5000));
    recyclePids(dir, { init: victim.pid, reaper: victim.pid, supervisor: victim.pid });
    const listed = await within(Sandbox.list(), 60_000, "list");
    assert.ok(Array.isArray(listed));
    const created = await within(Sandbox.create(), 60_000, "create");
    await created.destroy();
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(processAlive(victim.pid), "list() or create() killed a process that merely has a recorded pid");
  } finally {
    await sb.destroy().catch(() => {});
    await killOwn(victim);
    forgetPids(dir);
  }
});

test("escape: a planted state folder (another uid's, or world-writable) naming host pids and a host cgroup is not acted on by list() or create()", async () => {
  const a = await hostSleep(); // named by the first folder's pids file (init and reaper)
  const b = await hostSleep(); // inside the cgroup named by the fake cgroups file
  const c = await hostSleep(); // named by every line of the second folder's pids file
  const cgRoot = v2Root();
  const fakeCg = cgRoot ? `${cgRoot}/mvm-escape-victim-${TAG}` : null;
  const id1 = randomId();
  const id2 = randomId();
  const p1 = `${STATE}/${id1}`;
  const p2 = `${STATE}/${id2}`;
  const meta = (id: string, owner: number) =>
    JSON.stringify({
      v: 1,
      id,
      image: "host",
      workloadId: "planted",
      tags: { suite: "escape-planted" },
      createdAt: new Date().toISOString(),
      expiresAt: new Date(Date.now() + 3600_000).toISOString(),
      ttlSeconds: 3600,
      limits: {},
      env: {},
      ownerPid: owner,
      sandboxUid: 2_000_000_001,
    });
  // a planter can read any process's start time, so the planted identities are the victims' real ones: only the
  // folder's owner and mode may keep the engine from acting on them
  const pidsFile = (init: number, supervisor: { pid: number; start: string }) =>
    `init ${init} ${startTime(init)}\nreaper ${init} ${startTime(init)}\nsupervisor ${supervisor.pid} ${supervisor.start}\n`;
  try {
    mkdirSync(STATE, { recursive: true, mode: 0o711 });
    if (fakeCg) {
      mkdirSync(fakeCg);
      writeFileSync(`${fakeCg}/cgroup.procs`, String(b.pid));
    }
    const dead = await deadPid();
    mkdirSync(p1, { mode: 0o755 });
    writeFileSync(`${p1}/meta.json`, meta(id1, dead));
    // a dead supervisor: the folder looks stale, so a cleanup that trusted it would kill its init and groups
    writeFileSync(`${p1}/pids`, pidsFile(a.pid, { pid: dead, start: "1" }));
    writeFileSync(`${p1}/cgroups`, fakeCg ? `${fakeCg}\n-\n` : "");
    for (const f of ["", "/meta.json", "/pids", "/cgroups"]) chownSync(`${p1}${f}`, 12345, 12345);
    mkdirSync(p2);
    chmodSync(p2, 0o777);
    writeFileSync(`${p2}/meta.json`, meta(id2, c.pid));
    writeFileSync(`${p2}/pids`, pidsFile(c.pid, { pid: c.pid, start: startTime(c.pid) }));
    assert.deepEqual(
      [sandboxPids(p1), sandboxPids(p2)],
      [{ init: a.pid, reaper: a.pid, supervisor: dead }, { init: c.pid, reaper: c.pid, supervisor: c.pid }],
      "test setup: the planted pids files do not name the victims",
    );
    const listed = await Sandbox.list().then((l) => l.map((i) => i.id), (e) => e);
    const created = await Sandbox.create().then(async (sb) => (await sb.destroy(), "created"), (e) => e);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(
      { a: processAlive(a.pid), b: processAlive(b.pid), c: processAlive(c.pid), cgroup: fakeCg ? existsSync(fakeCg) : true },
      { a: true, b: true, c: true, cgroup: true },
      "root acted on pids or a cgroup named by a folder it does not own",
    );
    if (Array.isArray(listed)) assert.deepEqual(listed.filter((id) => id === id1 || id === id2), [], "list() returned a planted folder");
    else assert.ok(listed instanceof PermissionDeniedError, `list() failed with ${listed}`);
    assert.ok(created === "created" || created instanceof PermissionDeniedError, `create() failed with ${created}`);
  } finally {
    await killOwn(a, b, c);
    rmSync(p1, { recursive: true, force: true });
    rmSync(p2, { recursive: true, force: true });
    if (fakeCg) {
      for (let i = 0; i < 50 && existsSync(fakeCg); i++) {
        try {
          rmdirSync(fakeCg);
        } catch {
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    }
  }
});

// ---------------------------------------------------------------------------------------------------------------
// the host side: descriptors, keyring, umask, other state dirs (child processes of the same runtime)

test("escape: a parent's fd 7 on / without close-on-exec reaches no guest process; the guest cannot create a file on the host through it", async () => {
  const marker = [`/tmp/mvm-escape-fd-${TAG}`, `/mvm-escape-fd-${TAG}`];
  try {
    const out = await runFixture("fd", { wrap: ["bash", "-c", 'exec 7</; exec "$0" "$@"'] });
    assert.equal(out.error, undefined, JSON.stringify(out.error));
    assert.equal(out.parentFd7, "/", "test setup: the client process did not inherit fd 7");
    const p = out.probe;
    for (const m of marker) assert.equal(existsSync(m), false, `the guest created ${m} on the host`);
    assert.deepEqual(p.created, [], "the guest created files through a descriptor");
    assert.match(String(p.self7), /^error/, `the guest listed the host through /proc/self/fd/7: ${String(p.self7).slice(0, 200)}`);
    assert.deepEqual(Object.keys(p.self_initial).sort(), ["0", "1", "2"], `the guest process holds ${JSON.stringify(p.self_initial)}`);
    const hostRoot = readdirSync("/").sort();
    const dirs = (p.dir_fds as Array<[string, string, string, string[] | string]>).filter(([, , target]) => !target.startsWith("/proc/"));
    const hostLike = dirs.filter(([, , , names]) => Array.isArray(names) && names.join("/") === hostRoot.join("/"));
    assert.deepEqual(hostLike.map(([pid, fd, tgt]) => `pid ${pid} fd ${fd} -> ${tgt}`), [], "guest-visible processes hold the host's /");
    assert.deepEqual(
      dirs.map(([pid, fd, tgt]) => `pid ${pid} fd ${fd} -> ${tgt}`),
      [],
      "guest-visible processes hold directory descriptors",
    );
  } finally {
    for (const m of marker) rmSync(m, { force: true });
  }
});

test("escape: the host's session keyring is not the guest's: a host key cannot be read, a guest key does not appear on the host", async (t) => {
  const join = String.raw`
import ctypes, json, os, sys
libc = ctypes.CDLL(None, use_errno=True); sc = libc.syscall; sc.restype = ctypes.c_long; L = ctypes.c_long
tag = sys.argv[1]
if sc(L(250), L(1), ('mvm-escape-' + tag).encode()) < 0:
    print(json.dumps({'error': {'code': 'SETUP', 'message': 'keyctl(JOIN_SESSION_KEYRING) failed: errno %d' % ctypes.get_errno()}})); sys.exit(0)
secret = ('secret-' + tag).encode()
if sc(L(248), b'user', ('mvm-canary-' + tag).encode(), secret, L(len(secret)), L(-3)) < 0:
    print(json.dumps({'error': {'code': 'SETUP', 'message': 'add_key failed: errno %d' % ctypes.get_errno()}})); sys.exit(0)
os.execv(sys.argv[2], sys.argv[2:])
`;
  const out = await runFixture("keyring", { wrap: ["/usr/bin/python3", "-c", join, TAG] });
  if (out.error?.code === "SETUP") {
    t.skip(`this host cannot give the client a session keyring with a key (${out.error.message}): nothing to leak`);
    return;
  }
  assert.equal(out.error, undefined, JSON.stringify(out.error));
  const g = out.guest;
  assert.ok(g, `no guest probe: ${out.guestErr}`);
  assert.deepEqual(g.read, [], "the guest read the host's key");
  assert.ok(g.search[0] < 0 && g.request[0] < 0, `the guest found the host's key: search ${g.search}, request_key ${g.request}`);
  assert.ok(!String(g.proc_keys).includes(`mvm-canary-${TAG}`), "the host's key shows in the guest's /proc/keys");
  assert.ok(out.host.guest_key < 0, "a key the guest added to its session keyring appeared in the host's session keyring");
  if (g.session_id[0] > 0) assert.notEqual(g.session_id[0], out.host.session_id, "the guest's @s is the host's session keyring");
});

test("escape: state files are 0600 and state folders 0700/0711 even when the client runs under umask 000", async () => {
  const out = await runFixture("statefiles", { wrap: ["sh", "-c", 'umask 000; exec "$0" "$@"'] });
  assert.equal(out.error, undefined, JSON.stringify(out.error));
  assert.ok(out.entries.length > 2, JSON.stringify(out));
  const bad = (out.entries as Array<[string, string, number]>)
    .filter(([, type, mode]) => type === "dir" ? mode !== 0o700 && mode !== 0o711 : (mode & 0o077) !== 0)
    .map(([p, type, mode]) => `${p.slice(STATE.length)} ${type} ${mode.toString(8)}`);
  assert.deepEqual(bad, [], "state entries readable or writable by others");
  assert.equal(out.root[1] & 0o022, 0, `the state root ${out.root[0]} is writable by others`);
});

test("escape: a create and list under another MVM_STATE_DIR (another process) does not kill a running command of this one", async (t) => {
  await using sb = await Sandbox.create();
  const p = await sb.commands.start(["sh", "-c", "sleep 4; echo done"]);
  const other = secondStateDir([sb.id]);
  try {
    const out = await runFixture("churn", { env: { MVM_STATE_DIR: other } });
    if (out.error?.code === "PERMISSION_DENIED") {
      t.skip(`the second state dir was refused: ${out.error.message}`);
    } else assert.equal(out.error, undefined, JSON.stringify(out.error));
    const r = await within(p.output(), 30_000, "the long command");
    assert.deepEqual([r.stdout, r.exitCode, r.signal], ["done\n", 0, null], `the command was cut short: ${JSON.stringify(r)}`);
    assert.equal((await sb.commands.run(["echo", "alive"])).stdout, "alive\n");
  } finally {
    await p.kill("SIGKILL").catch(() => {});
    rmSync(other, { recursive: true, force: true });
  }
});

test("escape: a world-writable state root is refused with PERMISSION_DENIED naming the path", async () => {
  const base = secondStateDir();
  try {
    chmodSync(`${base}/sandboxes`, 0o777);
    const out = await runFixture("create", { env: { MVM_STATE_DIR: base } });
    assert.equal(out.error?.code, "PERMISSION_DENIED", `got ${JSON.stringify(out)}`);
    assert.ok(String(out.error.message).includes(base), out.error.message);
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});

test("escape: a state root owned by another user is refused with PERMISSION_DENIED naming the path", async () => {
  const base = secondStateDir();
  try {
    chownSync(`${base}/sandboxes`, 12345, 12345);
    const out = await runFixture("create", { env: { MVM_STATE_DIR: base } });
    assert.equal(out.error?.code, "PERMISSION_DENIED", `got ${JSON.stringify(out)}`);
    assert.ok(String(out.error.message).includes(base), out.error.message);
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});

test("escape: the SDK's tools at /.mvm cannot be renamed, replaced, read or made writable; commands and files stay exact", async () => {
  await using sb = await Sandbox.create();
  const r = await sb.commands.run([
    "sh",
    "-c",
    "mv /.mvm /mvm-x 2>/dev/null && echo MOVED; rm -f /.mvm/sh 2>/dev/null && echo REMOVED; " +
    "echo x > /.mvm/sh 2>/dev/null && echo WROTE; chmod 777 /.mvm/sh 2>/dev/null && echo CHMOD; " +
    "cat /.mvm/sh >/dev/null 2>&1 && echo READ; mkdir -p /.mvm/new 2>/dev/null && echo MKDIR; echo done",
  ]);
  assert.equal(r.stdout, "done\n", r.stdout);
  const data = new TextEncoder().encode(`exact-${TAG}\n`.repeat(1000));
  await sb.files.write("/app/exact.bin", data);
  assert.equal(sha(await sb.files.read("/app/exact.bin")), sha(data));
  const h = await sb.commands.run(["sha256sum", "/app/exact.bin"]);
  assert.equal(h.stdout.split(" ")[0], sha(data));
});

test("escape: a pause holds against a forking guest that hunts for a cgroup.freeze or cgroup.procs to undo it; resume then answers truly", async () => {
  await using sb = await Sandbox.create();
  const found = await sb.commands.run([
    "sh",
    "-c",
    "for f in $(find / -xdev \\( -name cgroup.freeze -o -name cgroup.procs -o -name freezer.state \\) 2>/dev/null) " +
    "/sys/fs/cgroup/cgroup.freeze /sys/fs/cgroup/unified/cgroup.procs; do " +
    '[ -e "$f" ] && echo "$f"; (echo 0 > "$f") 2>/dev/null && echo "WROTE $f"; done; ' +
    "mount -t cgroup2 none /tmp 2>/dev/null && echo MOUNTED; echo done",
  ]);
  assert.equal(found.exitCode, 0);
  assert.ok(!/WROTE|MOUNTED/.test(found.stdout), found.stdout);
  // a counter, and a loop that forks a child per step (a frozen fork must not slip out)
  const p = await sb.commands.start([
    "sh",
    "-c",
    "i=0; while :; do i=$((i+1)); echo $i > /app/n.t; mv /app/n.t /app/n; (echo 0 > /app/forked) & sleep 0.002; done",
  ]);
  const file = `${STATE}/${sb.id}/root/app/n`;
  const read = () => {
    try {
      return Number(readFileSync(file, "utf8").trim()) || 0;
    } catch {
      return 0;
    }
  };
  assert.ok(await waitFor(() => read() > 5, 10_000), "the guest counter never ran");
  await sb.pause();
  const frozen = read();
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(read(), frozen, "a guest process ran while the sandbox was paused");
  await sb.resume();
  assert.ok(await waitFor(() => read() > frozen, 10_000), "the guest did not go on after resume");
  await p.kill("SIGKILL");
  const r = await within(sb.commands.run(["sh", "-c", "echo $((6*7))"], { timeoutSeconds: 10 }), 30_000, "after pause and resume");
  assert.deepEqual([r.stdout, r.exitCode], ["42\n", 0]);
});

test("escape: guest code cannot reconfigure, crash, overload or misuse the egress proxy of its sandbox", async () => {
  await using sb = await Sandbox.create({
    network: NetworkPolicy.denyByDefault().allowHttps("api.test").resolveTo("api.test", "10.213.255.2"),
  });
  const egress = () => egressPids(sb.id);
  const before = egress();
  assert.equal(before.length, 1, "one egress proxy");
  const r = await guestJson(
    sb,
    String.raw`
import json, os, socket, subprocess, time
out = {}
def run(*a):
    p = subprocess.run(list(a), capture_output=True)
    return p.returncode
out["nft"] = run("/usr/sbin/nft", "flush", "ruleset")
out["route"] = run("/usr/sbin/ip", "route", "del", "default")
out["addr"] = run("/usr/sbin/ip", "addr", "del", "198.18.0.1/32", "dev", "lo")
try:
    open("/proc/sys/net/ipv4/ip_forward", "w").write("1"); out["sysctl"] = "written"
except OSError as e:
    out["sysctl"] = e.errno
# malformed DNS: garbage, a truncated query, a compression loop, an answer instead of a query
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(0.3)
for pkt in [os.urandom(40), b"\x12\x34\x01\x00\x00\x01", b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01", b"\x12\x34\x81\x80" + b"\x00" * 60, b"\x00" * 512]:
    u.sendto(pkt, ("198.18.0.1", 53))
    try: u.recv(600)
    except OSError: pass
# the HTTP proxy port: requests for restricted and unnamed destinations, and a head that never ends
answers = []
for req in [b"CONNECT 127.0.0.1:22 HTTP/1.1\r\n\r\n", b"CONNECT [::1]:443 HTTP/1.1\r\n\r\n", b"GET http://169.254.169.254/latest HTTP/1.1\r\n\r\n",
            b"CONNECT api.test:22 HTTP/1.1\r\n\r\n", b"GET /relative HTTP/1.1\r\n\r\n", b"X" * 20000]:
    c = socket.create_connection(("198.18.0.1", 998), timeout=15)
    try:
        c.sendall(req)
        answers.append(c.recv(100).split(b"\r\n")[0].decode())
    except OSError as e:
        answers.append("error " + type(e).__name__)
    c.close()
out["answers"] = answers
# a flood of connections held open at once, to the interception port and to the stand-in address on a
# port no rule allows (refused before any upstream connect: nothing leaves this machine)
held = []
for i in range(150):
    for addr in [("198.18.0.1", 999), ("api.test", 80)]:
        try: held.append(socket.create_connection(addr, timeout=5))
        except OSError: pass
time.sleep(0.5)
for c in held: c.close()
out["dns_after"] = socket.getaddrinfo("api.test", 443, socket.AF_INET)[0][4][0]
print(json.dumps(out))
`,
  );
  for (const k of ["nft", "route", "addr"]) assert.notEqual(r[k], 0, `${k} must fail in the guest: ${JSON.stringify(r)}`);
  assert.notEqual(r.sysctl, "written");
  assert.deepEqual(r.answers.slice(0, 4), Array(4).fill("HTTP/1.1 403 Forbidden"), JSON.stringify(r.answers));
  assert.match(r.answers[4], /400|error/);
  assert.ok(r.dns_after.startsWith("198.18."), "the proxy still answers after the attacks");
  assert.ok(egress().includes(before[0]), "the same proxy process still runs");
  const logs: string[] = [];
  for await (const e of sb.logs()) if (e.type === "network.denied") logs.push(`${e.host}:${e.port}:${e.reason}`);
  assert.ok(logs.includes("127.0.0.1:22:not-allowed") && logs.includes("api.test:22:not-allowed"), logs.slice(0, 10).join(" "));
});

test("escape: a detached command's spool and keeper are out of the guest's reach; its results stay the host's", async () => {
  await using sb = await Sandbox.create();
  const p = await sb.commands.start(["sh", "-c", "echo spooled; sleep 300"], { detached: true });
  const spool = `${STATE}/${sb.id}/procs/${p.id}`;
  const keeper = JSON.parse(readFileSync(`${spool}/meta.json`, "utf8")).keeperPid as number;
  assert.ok(processAlive(keeper));
  // the guest looks for the spool and the keeper everywhere it can see, and tries to plant a status and output
  const hunt = await sb.commands.run([
    "sh",
    "-c",
    [
      `find / -xdev \\( -name 'out.0*' -o -name 'status.json' -o -name '${p.id}' -o -name procs \\) 2>/dev/null`,
      "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' | grep -c 'keepe[r]\\.'",
      `mkdir -p /procs/${p.id} && echo '{"status":{"exitCode":0}}' > /procs/${p.id}/status.json && echo planted`,
      `ln -s /etc/passwd /procs/${p.id}/out.000001 2>/dev/null; kill -9 -1 2>/dev/null; echo done`,
    ].join("; "),
  ], { timeoutSeconds: 30 });
  assert.equal(hunt.stdout.split("\n").filter((l) => l.startsWith("/") && !l.startsWith("/procs")).join("\n"), "", hunt.stdout);
  assert.match(hunt.stdout, /^0$/m, `the keeper shows in the guest's process list: ${hunt.stdout}`);
  // the planted files are in the guest's own root, not in the host's spool (where the keeper may have written
  // the command's real status meanwhile: the guest's kill -1 ends it, and its runner, at once)
  assert.ok(existsSync(`${STATE}/${sb.id}/root/procs/${p.id}/status.json`));
  const hostStatus = existsSync(`${spool}/status.json`) ? readFileSync(`${spool}/status.json`, "utf8") : "";
  assert.doesNotMatch(hostStatus, /"exitCode":0\b/, `the planted status reached the host's spool: ${hostStatus}`);
  // the keeper lives on, or ended as it does when its command ends: after recording the status it saw
  assert.ok(processAlive(keeper) || /"exitCode":\d+/.test(hostStatus), "guest code stopped the keeper");
  // the host's view is unchanged: the command still runs (the guest's kill -1 reached only its own processes,
  // which ended it: then the status is the host's observation, not the planted one)
  const q = await sb.commands.connect(p.id!, { from: "start" });
  const reader = q.stdout.getReader();
  assert.equal(new TextDecoder().decode((await reader.read()).value), "spooled\n");
  reader.releaseLock();
  await q.kill("SIGKILL");
  const s = await within(q.status, 30_000, "the detached command's status");
  assert.notEqual(s.exitCode, 0, "a planted status was taken for the command's");
  assert.ok(await waitFor(() => !processAlive(keeper), 10_000), "the keeper outlived its command");
});

test("escape: the audit chain, its key and its lock are out of the guest's sight (no path, no descriptor), and a guest-chosen name cannot forge a line", async () => {
  await using sb = await Sandbox.create();
  // a file name that looks like a chain line, and an argv0 full of JSON and newlines
  const forged = '{"entry":{"id":"aud_00000000000000000000","seq":0},"canonical":"","prev_hash":"","signature":""}';
  const w = await sb.files.write(`/app/x\n${forged}`, "x");
  await sb.commands.run(["sh", "-c", "true"]);
  const r = await sb.commands.run([
    "sh",
    "-c",
    "find / -xdev \\( -name 'chain-*.jsonl' -o -path '*/audit/key*' -o -path '*/audit/head' -o -path '*/audit/lock' -o -path '*/audit/spool*' -o -name 'sup-*.ev' \\) 2>/dev/null; " +
    'for f in /proc/[0-9]*/fd/*; do l=$(readlink "$f" 2>/dev/null); case "$l" in *audit*) echo "FD $f $l";; esac; done; echo done',
  ]);
  assert.equal(r.stdout, "done\n", r.stdout);
  const report = await verifyAudit({ stateDir: STATE_BASE });
  assert.equal(report.status, "VERIFIED", JSON.stringify(report.firstBad));
  const entries = await collect(sb.audit());
  assert.equal(entries.find((e) => e.id === w.auditId)?.data?.path, `/app/x\n${forged}`);
  assert.ok(!entries.some((e) => e.id === "aud_00000000000000000000"));
  // the supervisor's own entries (from its spool, which the guest cannot reach) carry only its words and numbers
  const sup = entries.filter((e) => e.labels.source === "supervisor");
  assert.deepEqual(sup.map((e) => e.event), ["started"]);
  assert.equal(typeof sup[0]!.data?.initPid, "number");
});

test("escape: stop() leaves no guest process anywhere on the host (double-forked, setsid, ignoring signals, frozen first); start() runs nothing of the guest's", async () => {
  await using sb = await Sandbox.create();
  const mark = `mvm-stop-${TAG}`;
  await sb.files.write(`/app/${mark}.sh`, `trap '' TERM HUP INT; while :; do sleep 1; done\n`, { mode: 0o755 });
  const p = await sb.commands.start([
    "sh",
    "-c",
    `(setsid sh /app/${mark}.sh </dev/null >/dev/null 2>&1 &) ; (sh -c 'sh /app/${mark}.sh &' &) ; exec sh /app/${mark}.sh`,
  ]);
  const onHost = () =>
    readdirSync("/proc").filter((d) => {
      try {
        return /^\d+$/.test(d) && readFileSync(`/proc/${d}/cmdline`, "utf8").includes(mark);
      } catch {
        return false;
      }
    });
  assert.ok(await waitFor(() => onHost().length >= 3, 10_000), `the guest's daemons did not start: ${onHost()}`);
  await sb.pause();
  await within(sb.stop(), 30_000, "stop of a paused sandbox");
  await p.status.catch(() => {});
  assert.ok(await waitFor(() => onHost().length === 0, 5000), `guest processes outlived stop(): ${onHost()}`);
  // the fresh jail serves files, never runs the guest's
  assert.match(await sb.files.readText(`/app/${mark}.sh`), /trap/);
  await sb.start();
  const r = await sb.commands.run(["sh", "-c", `ps -eo args= | grep -c '[${mark[0]}]${mark.slice(1)}'`]);
  assert.equal(r.stdout, "0\n");
  assert.equal(onHost().length, 0);
});

test("escape: the lease's watch, its control fifos and the pidfds it waits on are out of the guest's reach: a guest that hunts for them and kills all it can still ends on time", async () => {
  const sb = await Sandbox.create({ ttl: "10m" });
  try {
    const r = await sb.commands.run([
      "sh",
      "-c",
      [
        // the host-side supervisor, its watch and the state folder's fifos are not in the guest's pid or mount namespace
        'for p in /proc/[0-9]*; do c=$(tr \'\\0\' \' \' < $p/cmdline 2>/dev/null); case "$c" in *mvm-wat"ch"*|*mvm-super"visor"*) echo found $c;; esac; done',
        "find / -xdev \\( -name alive -o -name '*.alive' -o -name ctl -o -name ttl \\) -type p 2>/dev/null | sed 's/^/fifo /'",
        "kill -9 -1 2>/dev/null; echo done",
      ].join("; "),
    ]).catch((e) => e);
    if (!(r instanceof Error)) {
      assert.equal(r.stdout.split("\n").filter((l: string) => l.startsWith("found") || l.startsWith("fifo")).join("\n"), "");
    }
    // the lease still moves and still ends the sandbox: the guest could not reach what enforces it
    const dir = `${STATE}/${sb.id}`;
    await sb.setTtl(1);
    assert.ok(await waitFor(() => !existsSync(dir), 15_000), "a guest's attack kept the sandbox past its lease");
  } finally {
    await sb.destroy().catch(() => {});
  }
});

test("escape: a guest holding a secret's placeholder cannot have the egress proxy send the value elsewhere, nor reach the sandbox's CA key or the proxy", async () => {
  const net = await startTestNet();
  const value = `escape-secret-${randomBytes(12).toString("hex")}`;
  let sb: Sandbox | undefined;
  try {
    const policy = NetworkPolicy.denyByDefault()
      .allowHttps("api.test")
      .allowHttp("api.test")
      .allowHttps("other.test")
      .resolveTo("api.test", net.srv)
      .resolveTo("other.test", net.srv)
      .withUpstreamCa(net.ca);
    sb = await Sandbox.create({
      network: policy,
      secrets: { TOKEN: SecretRef.from("escape-token", { hosts: ["api.test"], from: () => value }) },
    });
    await sb.files.write("/app/ca.pem", net.ca);
    await sb.files.write("/app/forge.py", readFileSync(new URL("./fixtures/network/forge.py", import.meta.url)));
    const sock = `${terminatorDir(STATE)}/sock`;
    const r = await sb.commands.run(["python3", "/app/forge.py", sock], { timeoutSeconds: 120 });
    assert.equal(r.exitCode, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    const leaked = createHash("sha256").update(`Bearer ${value}`).digest("hex");
    for (
      const k of [
        "connect-bound-sni-other",
        "connect-other-sni-bound",
        "host-other",
        "two-hosts",
        "cl-and-te",
        "h2",
        "plain-http",
        "absolute-other",
        "bare-lf",
        "bare-cr",
      ]
    ) {
      const reply: string = out[k].reply ?? "";
      assert.ok(!reply.includes(leaked) && !reply.includes(value), `${k}: the value reached a server: ${reply}`);
      assert.ok(
        out[k].error !== undefined || reply === "" || /^HTTP\/1\.1 (400|403) /.test(reply),
        `${k} was not refused: ${JSON.stringify(out[k])}`,
      );
    }
    // a request with a body is the last of its connection: what the guest hid in a GET body never carries the value
    const smuggled: string = out["get-body-smuggle"].reply ?? "";
    assert.ok(!smuggled.includes(value) && !smuggled.includes("/smuggled") && !smuggled.includes('"/b"'), smuggled);
    // of two requests sent at once, the one for another host never leaves (the proxy refuses the connection there)
    const pipelined: string = out["pipelined-other"].reply ?? "";
    assert.match(pipelined, /secret policy \(name-mismatch\)/);
    assert.ok(pipelined.split(leaked).length <= 2 && !pipelined.includes("/hash/second"), pipelined);
    assert.equal(out.bundle_has_key, false);
    assert.equal(out.bundle_writable, false);
    assert.equal(out.bundle_mounted, true);
    assert.deepEqual(out.found, [], "the guest read the proxy's state");
    assert.deepEqual(out.procs, [], "the guest sees the proxy or the terminator");
    assert.deepEqual(out.terminator, [], "the guest reached the shared TLS terminator's socket");
    assert.ok(existsSync(sock), "the terminator runs (it has a socket the guest could have tried)");
    // what matters is that nothing else answers (a busy proxy may let one of its own connects time out)
    assert.deepEqual(out.open_ports.filter((p: number) => p !== 998 && p !== 999), [], "only the proxy's two TCP sockets answer");
  } finally {
    await sb?.destroy();
    net.stop();
  }
});
