// Commands on a pseudo-terminal (commands.start(argv, { pty: true }), p.resize()), local engine: the program
// sees a terminal on stdin, stdout and stderr (stderr merged into stdout), its size and a resize (with
// SIGWINCH), Ctrl-C through the line discipline, its exit code, a large output whole, the end of input as
// Ctrl-D; and a PTY start is refused like any other in a paused or stopped sandbox. One sandbox serves all.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { ConflictError, InvalidInputError, Sandbox, type SandboxProcess, UnsupportedError } from "../mod.ts";
import { mvmctlCapabilities } from "../src/engines/mvmctl/mod.ts";
import { runtime } from "../src/runtime/mod.ts";
import { collectText } from "../src/streams.ts";
import { runtimeCommand } from "./helpers.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const CLI = new URL("../src/cli.ts", import.meta.url).pathname;
const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

let sbP: Promise<Sandbox> | undefined;
const shared = () => sbP ??= Sandbox.create({ tags: { suite: "pty" } });
after(async () => {
  if (sbP) await (await sbP).destroy().catch(() => {});
});

/** The terminal's output as it comes, and a way to wait until it shows something (no sleeps). */
function watch(p: SandboxProcess): { text: () => string; until: (re: RegExp, what: string) => Promise<void>; ended: Promise<string> } {
  let out = "";
  let waiters: Array<{ re: RegExp; ok: () => void; fail: (e: Error) => void; what: string }> = [];
  const dec = new TextDecoder();
  const ended = (async () => {
    for await (const c of p.stdout) {
      out += dec.decode(c, { stream: true });
      waiters = waiters.filter((w) => w.re.test(out) ? (w.ok(), false) : true);
    }
    for (const w of waiters) w.fail(new Error(`the output ended before ${w.what}: ${JSON.stringify(out.slice(-400))}`));
    return out;
  })();
  // a stream that errors (its sandbox stopped under a test that already failed) is that test's failure, not an
  // unhandled rejection charged to whichever test runs next
  ended.catch(() => {});
  return {
    text: () => out,
    // bounded: a test that waits for output that never comes fails, it does not hang
    until: (re, what) =>
      re.test(out) ? Promise.resolve() : new Promise((ok, fail) => {
        const timer = setTimeout(() => fail(new Error(`no ${what} within 30 s: ${JSON.stringify(out.slice(-400))}`)), 30_000);
        waiters.push({ re, ok: () => (clearTimeout(timer), ok()), fail: (e) => (clearTimeout(timer), fail(e)), what });
      }),
    ended,
  };
}

test("pty: a terminal on stdin, stdout and stderr, its initial size, TERM, stderr merged into stdout, the exit code", async () => {
  const sb = await shared();
  const p = await sb.commands.start(
    ["sh", "-c", '[ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo tty; stty size; echo "$TERM"; echo oops >&2; exit 7'],
    { pty: true, cols: 100, rows: 30 },
  );
  const r = await p.output();
  assert.equal(r.stdout, "tty\r\n30 100\r\nxterm-256color\r\noops\r\n");
  assert.equal(r.stderr, "");
  assert.deepEqual([r.exitCode, r.signal], [7, null]);
  // run() with pty: its stdin ends at once (Ctrl-D for a program reading lines); TERM from env wins
  const cat = await sb.commands.run(["sh", "-c", 'cat; echo "end $TERM"'], { pty: true, env: { TERM: "vt100" } });
  assert.deepEqual([cat.stdout, cat.exitCode], ["end vt100\r\n", 0]);
});

test("pty: resize changes what stty size shows and delivers SIGWINCH; keystrokes are echoed and read as lines", async () => {
  const sb = await shared();
  const p = await sb.commands.start(
    // a trapped signal ends a read early: the loop reads on until a line came
    [
      "sh",
      "-c",
      'trap \'stty size\' WINCH; echo ready; until [ -n "$line" ]; do read line; done; echo "got $line"; read again; echo "then $again"',
    ],
    { pty: true },
  );
  const o = watch(p);
  await o.until(/ready\r\n/, "the shell was ready");
  await p.resize(132, 43);
  await o.until(/43 132\r\n/, "the WINCH trap printed the new size");
  const w = p.stdin.getWriter();
  await w.write(enc("first\r"));
  await o.until(/got first\r\n/, "the line arrived");
  await w.write(enc("second\r"));
  await w.close();
  const s = await p.status;
  assert.equal(s.exitCode, 0);
  const out = await o.ended;
  // the default size was 24 rows by 80 columns before the resize; the typed lines were echoed
  assert.match(out, /^ready\r\n43 132\r\n/);
  assert.match(out, /first\r\n/);
  assert.match(out, /then second\r\n$/);
  await assert.rejects(p.resize(0, 10), InvalidInputError);
  await p.resize(90, 20); // an ended process is left as it is
});

test("pty: Ctrl-C (0x03) interrupts sleep in an interactive sh, which goes on; kill and timeoutSeconds work as for any command", async () => {
  const sb = await shared();
  const p = await sb.commands.start(["sh", "-i"], { pty: true, timeoutSeconds: 60, env: { PS1: "$ " } });
  try {
    const o = watch(p);
    const w = p.stdin.getWriter();
    // the job prints its word only once it runs in the terminal's foreground (the shell hands the terminal to the
    // job's process group before the job execs): a Ctrl-C typed as soon as the word shows can only reach the job.
    // (With "echo sleeping; sleep 100" the shell echoes before the job exists, and a Ctrl-C typed in that instant
    // reached the shell instead, under CI's load.)
    await w.write(enc("sh -c 'echo sleeping; exec sleep 100'\r"));
    await o.until(/sleeping\r\n/, "the shell ran the line");
    await w.write(new Uint8Array([3]));
    await w.write(enc("echo back\r"));
    // the shell's own output, after a newline or its prompt (the terminal's echo of the typed line also ends in "back"):
    // only once the shell has handled the interrupt and run the line is the next one typed
    await o.until(/(^|\n|\$ )back\r\n/, "the shell came back after Ctrl-C");
    await w.write(enc("exit 5\r"));
    const s = await p.status;
    assert.deepEqual([s.exitCode, s.timedOut], [5, false]);
  } finally {
    // a failure above must not leave the shell running in the sandbox the next tests share
    await p.kill("SIGKILL").catch(() => {});
    await p.status.catch(() => {});
  }

  const k = await sb.commands.start(["sleep", "100"], { pty: true });
  await k.kill("SIGTERM");
  const ks = await k.status;
  assert.deepEqual([ks.signal, ks.exitCode], ["SIGTERM", 143]);
  const t = await sb.commands.run(["sleep", "100"], { pty: true, timeoutSeconds: 1 });
  assert.deepEqual([t.timedOut, t.signal], [true, "SIGKILL"]);
});

test("pty: a program that writes a lot: every byte arrives, in order, also when it exits right after", async () => {
  const sb = await shared();
  const n = 150_000;
  const r = await sb.commands.run(["seq", String(n)], { pty: true });
  let want = "";
  for (let i = 1; i <= n; i++) want += `${i}\r\n`;
  assert.equal(r.stdout.length, want.length);
  assert.equal(r.stdout === want, true, "the output differs from seq's");
  assert.equal(r.exitCode, 0);
});

test("pty: options are checked; resize without a terminal, pty with detached and the mvmctl engine are refused", async () => {
  const sb = await shared();
  await assert.rejects(
    sb.commands.start(["true"], { cols: 80 }),
    (e: Error) => e instanceof InvalidInputError && /cols.*pty/.test(e.message),
  );
  await assert.rejects(sb.commands.start(["true"], { pty: true, rows: 0 }), InvalidInputError);
  await assert.rejects(sb.commands.start(["true"], { pty: true, cols: 1.5 }), InvalidInputError);
  await assert.rejects(sb.commands.start(["true"], { pty: true, detached: true }), UnsupportedError);
  const p = await sb.commands.start(["true"]);
  await assert.rejects(p.resize(80, 24), UnsupportedError);
  await p.status;
  assert.equal(sb.capabilities().pty, true);
  assert.equal(mvmctlCapabilities().pty, false);
  // a missing program is NOT_FOUND before any terminal is made, as without pty
  await assert.rejects(sb.commands.start(["no-such-program-xyz"], { pty: true }), (e: Error & { code?: string }) => e.code === "NOT_FOUND");
});

test("pty: in a paused or stopped sandbox a PTY start gets the same error as any start", async () => {
  const sb = await shared();
  const errorOf = (o: { pty?: boolean }) => sb.commands.start(["true"], o).then(() => null, (e: Error & { code?: string }) => e);
  if (sb.capabilities().pause) {
    await sb.pause();
    try {
      const [plain, pty] = [await errorOf({}), await errorOf({ pty: true })];
      assert.ok(pty instanceof ConflictError, `paused: ${pty}`);
      assert.deepEqual([pty.code, pty.message], [plain?.code, plain?.message]);
    } finally {
      await sb.resume();
    }
  } else console.log("# pty: the paused case needs cgroups (pause), which this host lacks");
  // the sandbox runs PTY commands again
  const r = await sb.commands.run(["echo", "again"], { pty: true });
  assert.equal(r.stdout, "again\r\n");
  await sb.stop();
  const [plain, pty] = [await errorOf({}), await errorOf({ pty: true })];
  assert.ok(pty instanceof ConflictError, `stopped: ${pty}`);
  assert.deepEqual([pty.code, pty.message], [plain?.code, plain?.message]);
});

test("cli: exec -t without a terminal here still gives the command one (80x24); -it on a terminal goes raw, follows size changes, restores it", async () => {
  const sb = await shared();
  if (sb.state !== "running") await sb.start();
  const [cmd, ...pre] = runtimeCommand(CLI);
  // no terminal on this side: the command gets a PTY of the default size, its output streams
  const plain = await runtime().spawn(cmd!, [
    ...pre,
    "exec",
    "-t",
    sb.id,
    "--",
    "sh",
    "-c",
    "[ -t 0 ] && [ -t 1 ] && echo tty; stty size; exit 3",
  ]);
  const [out, , st] = await Promise.all([collectText(plain.stdout!), collectText(plain.stderr!), plain.status]);
  assert.deepEqual([out, st.code], ["tty\r\n24 80\r\n", 3]);

  // a real terminal on this side: script(1) gives the CLI one; the test types into it and resizes it from outside
  const prog = "trap 'stty size' WINCH; trap 'echo INT-in-sandbox; exit 9' INT; stty size; echo ready; " +
    'until [ -n "$x" ]; do read x; done; echo "got:$x"; exit 4';
  const inner = `tty; stty cols 100 rows 30; ${[cmd!, ...pre, "exec", "-it", sb.id, "--", "sh", "-c", prog].map(q).join(" ")}; ` +
    `echo "cli:$?"; stty -a | grep -o -- '-\\?icanon'`;
  const s = await runtime().spawn("script", ["-qfec", inner, "/dev/null"], { stdin: "piped" });
  const o = watch({ stdout: s.stdout! } as SandboxProcess);
  const w = s.stdin!.getWriter();
  try {
    await o.until(/ready\r*\n/, "the command started");
    const pts = /\/dev\/pts\/\d+/.exec(o.text())?.[0];
    assert.ok(pts, `no tty line: ${o.text()}`);
    assert.match(o.text(), /30 100\r*\n/, "the command's terminal did not get this terminal's size");
    await runtime().spawn("stty", ["-F", pts, "cols", "120", "rows", "40"]).then((c) => c.status);
    await o.until(/40 120\r*\n/, "the size change reached the command");
    await w.write(enc("hi\r"));
    await o.until(/got:hi\r*\n/, "the typed line reached the command");
    await o.until(/cli:4\r*\n/, "the CLI passed the exit code on");
    // Ctrl-C went nowhere yet; the terminal is back in line mode after the CLI
    await o.until(/icanon/, "stty -a ran");
    assert.match(o.text(), /cli:4\r*\n(-)?icanon/);
    assert.doesNotMatch(o.text(), /-icanon/, "the CLI left the terminal raw");
  } finally {
    await w.close().catch(() => {});
    s.kill("SIGKILL");
    await s.status;
  }
  // raw mode: Ctrl-C typed here is a byte for the command's terminal, not a signal for the CLI
  const inner2 = `stty cols 100 rows 30; ${[cmd!, ...pre, "exec", "-it", sb.id, "--", "sh", "-c", prog].map(q).join(" ")}; echo "cli:$?"`;
  const s2 = await runtime().spawn("script", ["-qfec", inner2, "/dev/null"], { stdin: "piped" });
  const o2 = watch({ stdout: s2.stdout! } as SandboxProcess);
  const w2 = s2.stdin!.getWriter();
  try {
    await o2.until(/ready\r*\n/, "the command started");
    await w2.write(new Uint8Array([3]));
    await o2.until(/cli:\d+/, "the CLI ended");
    assert.match(o2.text(), /INT-in-sandbox\r*\n(.|\n)*cli:9/);
  } finally {
    await w2.close().catch(() => {});
    s2.kill("SIGKILL");
    await s2.status;
  }
});

// (TERM, INT, HUP and QUIT are passed on to the command where the host has no cgroups, by design: not sent here)
test("pty: another command's signals to the PTY helper (same uid) cannot end it and fake the command's status", async () => {
  const sb = await shared();
  if (sb.state !== "running") await sb.start();
  const p = await sb.commands.start(["sh", "-c", "sleep 1; exit 7"], { pty: true });
  const k = await sb.commands.run([
    "sh",
    "-c",
    `for d in /proc/[0-9]*; do case "$(tr '\\0' ' ' < $d/cmdline 2>/dev/null)" in mvm-pty*) ` +
    "for s in USR1 USR2 PIPE ALRM; do kill -$s ${d#/proc/}; done; echo sent;; esac; done",
  ]);
  assert.match(k.stdout, /sent/, "the guest found the helper");
  const s = await p.status;
  assert.deepEqual([s.exitCode, s.signal], [7, null]);
});
