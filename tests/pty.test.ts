// Commands on a pseudo-terminal (commands.start(argv, { pty: true }), p.resize()), local engine: the program
// sees a terminal on stdin, stdout and stderr (stderr merged into stdout), its size and a resize (with
// SIGWINCH), Ctrl-C through the line discipline, its exit code, a large output whole, the end of input as
// Ctrl-D; and a PTY start is refused like any other in a paused or stopped sandbox. One sandbox serves all.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { ConflictError, InvalidInputError, Sandbox, type SandboxProcess, UnsupportedError } from "../mod.ts";
import { mvmctlCapabilities } from "../src/engines/mvmctl/mod.ts";

const enc = (s: string) => new TextEncoder().encode(s);

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
  return {
    text: () => out,
    until: (re, what) => re.test(out) ? Promise.resolve() : new Promise((ok, fail) => waiters.push({ re, ok, fail, what })),
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
  const o = watch(p);
  const w = p.stdin.getWriter();
  await w.write(enc("echo sleeping; sleep 100\r"));
  await o.until(/sleeping\r\n/, "the shell ran the line");
  await w.write(new Uint8Array([3]));
  await w.write(enc("echo back\r"));
  await o.until(/back\r\n/, "the shell came back after Ctrl-C");
  await w.write(enc("exit 5\r"));
  const s = await p.status;
  assert.deepEqual([s.exitCode, s.timedOut], [5, false]);

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
