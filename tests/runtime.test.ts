// The runtime shim's pure helpers: detection, exit statuses, stdio spelling, abort wiring,
// permission refusals and host facts. No sandbox and no root; run by Deno, Bun and Node.
import { test } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { NotFoundError, PermissionDeniedError } from "../mod.ts";
import {
  detectRuntime,
  getEnv,
  hostPid,
  hostPlatform,
  permissionRefusal,
  pidExists,
  refusedFlag,
  runtime,
  withHostPermissions,
} from "../src/runtime/mod.ts";
import { runHooks } from "../src/runtime/host.ts";
import { binaryNotFound, defineRuntime, exitStatus, killOnAbort, nodeStdio } from "../src/runtime/spawn.ts";
import type { ChildProcess, ExitStatus } from "../src/runtime/types.ts";
import { RUNTIME } from "./helpers.ts";

/** A child that records the signals sent to it and exits when `exit` is called. */
function fakeChild(): ChildProcess & { signals: string[]; exit(): Promise<void> } {
  let exit!: (s: ExitStatus) => void;
  const status = new Promise<ExitStatus>((res) => exit = res);
  const signals: string[] = [];
  return {
    pid: 4242,
    stdin: null,
    stdout: null,
    stderr: null,
    status,
    signals,
    kill: (signal = "SIGTERM") => void signals.push(signal),
    unref() {},
    ref() {},
    async exit() {
      exit({ code: 0, signal: null });
      await status;
    },
  };
}

const notCapable = (message = "Requires run access") => Object.assign(new Error(message), { name: "NotCapable" });

test("detectRuntime: Deno with Deno.Command is deno", () => {
  assert.equal(detectRuntime({ Deno: { Command: class {} } }), "deno");
});

test("detectRuntime: a Deno global without Deno.Command is not taken for Deno", () => {
  assert.equal(detectRuntime({ Deno: {} }), "node");
});

test("detectRuntime: a Bun global is bun", () => {
  assert.equal(detectRuntime({ Bun: {} }), "bun");
});

test("detectRuntime: neither global is node", () => {
  assert.equal(detectRuntime({}), "node");
});

test("detectRuntime: the real globals name the runtime running the tests", () => {
  assert.equal(detectRuntime(), RUNTIME);
});

test("runtime: every call returns the one shim picked first", () => {
  assert.equal(runtime(), runtime());
});

test("exitStatus: an exit code without a signal is kept", () => {
  assert.deepEqual(exitStatus(7, null), { code: 7, signal: null });
});

test("exitStatus: a signal wins over the code", () => {
  assert.deepEqual(exitStatus(137, "SIGKILL"), { code: null, signal: "SIGKILL" });
});

test("exitStatus: a numeric signal is spelled SIG<n>", () => {
  assert.deepEqual(exitStatus(null, 9), { code: null, signal: "SIG9" });
});

test("exitStatus: an empty signal string counts as no signal", () => {
  assert.deepEqual(exitStatus(0, ""), { code: 0, signal: null });
});

test("nodeStdio: each Stdio has its node:child_process spelling", () => {
  assert.deepEqual([nodeStdio("piped", "null"), nodeStdio("null", "piped"), nodeStdio("inherit", "null")], ["pipe", "ignore", "inherit"]);
});

test("nodeStdio: undefined takes the fallback", () => {
  assert.equal(nodeStdio(undefined, "piped"), "pipe");
});

test("killOnAbort: without a signal nothing is killed", () => {
  const c = fakeChild();
  killOnAbort(undefined, c);
  assert.deepEqual(c.signals, []);
});

test("killOnAbort: an already aborted signal kills at once with SIGKILL", () => {
  const c = fakeChild();
  killOnAbort(AbortSignal.abort(), c);
  assert.deepEqual(c.signals, ["SIGKILL"]);
});

test("killOnAbort: a later abort kills with SIGKILL, once", () => {
  const c = fakeChild();
  const ac = new AbortController();
  killOnAbort(ac.signal, c);
  assert.deepEqual(c.signals, []);
  ac.abort();
  ac.abort();
  assert.deepEqual(c.signals, ["SIGKILL"]);
});

test("killOnAbort: after the child exited an abort sends nothing", async () => {
  const c = fakeChild();
  const ac = new AbortController();
  killOnAbort(ac.signal, c);
  await c.exit();
  ac.abort();
  assert.deepEqual(c.signals, []);
});

test("defineRuntime: keeps the name and the spawn's child", async () => {
  const c = fakeChild();
  const rt = defineRuntime("bun", () => Promise.resolve(c));
  assert.equal(rt.name, "bun");
  assert.equal(await rt.spawn("true", []), c);
});

test("defineRuntime: passes cmd, args and options through to the runtime's spawn", async () => {
  const seen: unknown[] = [];
  const rt = defineRuntime("node", (cmd, args, o) => {
    seen.push(cmd, args, o);
    return Promise.resolve(fakeChild());
  });
  await rt.spawn("ls", ["-l"], { cwd: "/tmp" });
  assert.deepEqual(seen, ["ls", ["-l"], { cwd: "/tmp" }]);
});

test("defineRuntime: the options' signal kills the child it spawned", async () => {
  const c = fakeChild();
  const ac = new AbortController();
  await defineRuntime("deno", () => Promise.resolve(c)).spawn("sleep", ["30"], { signal: ac.signal });
  ac.abort();
  assert.deepEqual(c.signals, ["SIGKILL"]);
});

test("binaryNotFound: a NOT_FOUND error naming the binary, with the cause", () => {
  const cause = new Error("ENOENT");
  const e = binaryNotFound("bwrap", cause);
  assert.ok(e instanceof NotFoundError);
  assert.match(e.message, /bwrap/);
  assert.deepEqual(e.details, { binary: "bwrap" });
  assert.equal(e.cause, cause);
});

test("permissionRefusal: NotCapable becomes PERMISSION_DENIED naming the flag", () => {
  const e = permissionRefusal(notCapable(), "--allow-run", "running bwrap");
  assert.ok(e instanceof PermissionDeniedError);
  assert.equal(e.details.flag, "--allow-run");
  assert.match(e.message, /running bwrap.*--allow-run/);
});

test("permissionRefusal: PermissionDenied counts on Deno", () => {
  const e = Object.assign(new Error("denied"), { name: "PermissionDenied" });
  assert.ok(permissionRefusal(e, "--allow-read", "reading", true) instanceof PermissionDeniedError);
});

test("permissionRefusal: PermissionDenied off Deno is not a refusal", () => {
  const e = Object.assign(new Error("denied"), { name: "PermissionDenied" });
  assert.equal(permissionRefusal(e, "--allow-read", "reading", false), null);
});

test("permissionRefusal: any other error is not a refusal", () => {
  assert.equal(permissionRefusal(new TypeError("x"), "--allow-run", "running"), null);
});

test("withHostPermissions: returns what the function returns", async () => {
  assert.equal(await withHostPermissions(() => Promise.resolve(42)), 42);
});

test("withHostPermissions: an error that is no refusal passes through unchanged", async () => {
  const e = new TypeError("boom");
  await assert.rejects(withHostPermissions(() => Promise.reject(e)), (got: unknown) => got === e);
});

test("withHostPermissions: a refusal names the flag from its message", async () => {
  await assert.rejects(
    withHostPermissions(() => Promise.reject(notCapable("Requires write access, run again with the --allow-write flag"))),
    (e: unknown) => e instanceof PermissionDeniedError && e.details.flag === "--allow-write",
  );
});

test("withHostPermissions: a refusal without a flag in its message names every flag the SDK needs", async () => {
  await assert.rejects(
    withHostPermissions(() => Promise.reject(notCapable("no access"))),
    (e: unknown) => e instanceof PermissionDeniedError && e.details.flag === "--allow-run --allow-read --allow-write --allow-env",
  );
});

test("withHostPermissions: a PermissionDeniedError is kept as it is", async () => {
  const e = new PermissionDeniedError("already typed");
  await assert.rejects(withHostPermissions(() => Promise.reject(e)), (got: unknown) => got === e);
});

test("getEnv: reads a variable of this process", () => {
  process.env.MVM_RUNTIME_TEST_VAR = "x1";
  try {
    assert.equal(getEnv("MVM_RUNTIME_TEST_VAR"), "x1");
  } finally {
    delete process.env.MVM_RUNTIME_TEST_VAR;
  }
});

test("getEnv: an unset variable is undefined", () => {
  assert.equal(getEnv("MVM_RUNTIME_TEST_UNSET_VAR"), undefined);
});

test("hostPid and hostPlatform: this process's pid and OS", () => {
  assert.equal(hostPid(), process.pid);
  assert.equal(hostPlatform(), process.platform);
});

test("pidExists: this process exists", () => {
  assert.equal(pidExists(process.pid), true);
});

test("pidExists: pid 0 and negative pids are never taken for a process", () => {
  assert.equal(pidExists(0), false);
  assert.equal(pidExists(-1), false);
  assert.equal(pidExists(Number.NaN), false);
});

test("runHooks: runs hooks in order and goes on past one that throws", () => {
  const ran: string[] = [];
  const reported: unknown[] = [];
  const boom = new Error("boom");
  runHooks([() => ran.push("a"), () => {
    throw boom;
  }, () => ran.push("c")], (e) => reported.push(e));
  assert.deepEqual(ran, ["a", "c"]);
  assert.deepEqual(reported, [boom]);
});

test("refusedFlag: the flag with the value Deno's message names; --allow-all and valueless messages give the bare flag", () => {
  assert.equal(refusedFlag('Requires run access to "/bin/sh", run again with the --allow-run flag'), "--allow-run=/bin/sh");
  assert.equal(refusedFlag('Requires env access to "HOME", run again with the --allow-env flag'), "--allow-env=HOME");
  assert.equal(refusedFlag('Requires all access to "/proc/1/stat", run again with the --allow-all flag'), "--allow-all");
  assert.equal(refusedFlag("Requires run access, run again with the --allow-run flag"), "--allow-run");
  assert.equal(refusedFlag("no flag here"), null);
});

/** Waits for a peer's first byte (its end of the fifo is open then). */
async function ready(peer: ChildProcess): Promise<void> {
  const r = peer.stdout!.getReader();
  for (;;) {
    const { value, done } = await r.read();
    assert.ok(!done, "the fifo's peer ended before it was ready");
    if (value.length) break;
  }
  r.releaseLock();
}

test("openFifo: reads a fifo to its end and writes one with backpressure, on this runtime", async () => {
  const { mkdtempSync, rmSync } = await import("node:fs");
  const dir = mkdtempSync("/tmp/mvm-fifo-test-");
  try {
    const fifo = `${dir}/f`;
    await (await runtime().spawn("mkfifo", [fifo])).status;
    // a peer that holds the write end first (so the open does not wait), then writes 3 MiB and ends
    const writer = await runtime().spawn("perl", [
      "-e",
      'sysopen(my $rw, $ARGV[0], 2) or die; sysopen(my $w, $ARGV[0], 1) or die; close $rw; syswrite(STDOUT, "r"); <STDIN>; syswrite($w, "x" x 65536) for 1 .. 48',
      fifo,
    ], { stdin: "piped" });
    await ready(writer);
    const read = runtime().openFifo(fifo, "read");
    const w = writer.stdin!.getWriter();
    await w.write(new TextEncoder().encode("go\n"));
    await w.close();
    let n = 0;
    for await (const c of read) n += c.length;
    assert.equal(n, 48 * 65536);
    assert.deepEqual(await writer.status, { code: 0, signal: null });
    // a peer that holds the read end (non-blocking open), then, told to go (the write end is open: a read
    // before that would see the end at once), counts what arrives until the end
    const reader = await runtime().spawn("perl", [
      "-e",
      'sysopen(my $r, $ARGV[0], 04000) or die; fcntl($r, 4, 0); syswrite(STDOUT, "r"); <STDIN>; my $n = 0; while (my $k = sysread($r, my $b, 65536)) { $n += $k } print STDERR $n',
      fifo,
    ], { stdin: "piped" });
    await ready(reader);
    const out = runtime().openFifo(fifo, "write").getWriter();
    const go = reader.stdin!.getWriter();
    await go.write(new TextEncoder().encode("go\n"));
    for (let i = 0; i < 8; i++) await out.write(new Uint8Array(1 << 20));
    await out.close();
    await go.close();
    assert.equal(await new Response(reader.stderr).text(), String(8 << 20));
    // a small write reaches the reader at once, not when the writer closes (an interactive stdin)
    const echo = await runtime().spawn("perl", [
      "-e",
      'sysopen(my $r, $ARGV[0], 04000) or die; fcntl($r, 4, 0); syswrite(STDOUT, "r"); <STDIN>; sysread($r, my $b, 100); syswrite(STDOUT, $b)',
      fifo,
    ], { stdin: "piped" });
    const er = echo.stdout!.getReader();
    await er.read();
    const w2 = runtime().openFifo(fifo, "write").getWriter();
    const go2 = echo.stdin!.getWriter();
    await go2.write(new TextEncoder().encode("go\n"));
    await w2.write(new TextEncoder().encode("ping"));
    let got = "";
    while (got.length < 4) got += new TextDecoder().decode((await er.read()).value);
    assert.equal(got, "ping");
    await w2.close();
    await go2.close();
    await echo.status;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("spawn: an endless source piped to a child that exits without reading its stdin ends with an error", async () => {
  const c = await runtime().spawn("true", [], { stdin: "piped" });
  // (on Bun the write loop never gave the event loop a turn: this bound's timer could not fire, and the process hung)
  const endless = new ReadableStream<Uint8Array>({ pull: (k) => k.enqueue(new Uint8Array(65536)) });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const ended = await Promise.race([
      endless.pipeTo(c.stdin!).then(() => "finished", () => "failed"),
      new Promise<string>((res) => timer = setTimeout(() => res("still writing after 20 s"), 20_000)),
    ]);
    assert.equal(ended, "failed");
    assert.deepEqual(await c.status, { code: 0, signal: null });
  } finally {
    clearTimeout(timer);
  }
});
