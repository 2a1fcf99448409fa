// The API's semantics, messages and conveniences (issue 10) against real sandboxes: exit codes of
// signal deaths, timeouts under check, status that no unread stream holds up, files conveniences,
// names, typed messages. Every sandbox is created with `await using`, so a failing test leaves
// nothing behind.
import { test } from "node:test";
import assert from "node:assert/strict";
import { CommandExitError, CommandTimeoutError, Sandbox, TimeoutError } from "../mod.ts";
import { signalExitCode } from "../src/signals.ts";

test("api units: a signal death's exit code is 128 + its number", () => {
  assert.deepEqual([signalExitCode("SIGKILL"), signalExitCode("SIGTERM"), signalExitCode("SIGINT")], [137, 143, 130]);
  assert.equal(signalExitCode("SIGNOPE"), 128);
});

test("api: exitCode is never null once a process ended; the signal is named beside it", async () => {
  await using sb = await Sandbox.create();
  const p = await sb.commands.start(["sleep", "100"]);
  await p.kill("SIGKILL");
  const s = await p.status;
  assert.deepEqual([s.exitCode, s.signal, s.timedOut], [137, "SIGKILL", false]);
  const t = await sb.commands.run(["sleep", "100"], { timeoutSeconds: 0.5 });
  assert.deepEqual([t.exitCode, t.signal, t.timedOut], [137, "SIGKILL", true]);
  // a shell's own 128+n exit is an exit, not a signal
  const e = await sb.commands.run(["sh", "-c", "exit 130"]);
  assert.deepEqual([e.exitCode, e.signal], [130, null]);
});

test("api: a timeout under check: true throws TimeoutError carrying the result", async () => {
  await using sb = await Sandbox.create();
  const e = await sb.commands.run(["sh", "-c", "echo started; echo warming >&2; sleep 100"], { timeoutSeconds: 0.5, check: true })
    .catch((e: unknown) => e);
  assert.ok(e instanceof TimeoutError, String(e));
  assert.ok(e instanceof CommandTimeoutError);
  assert.equal(e.code, "TIMEOUT");
  const timedOut: boolean = e.result.timedOut;
  assert.deepEqual([timedOut, e.result.stdout, e.result.stderr, e.result.exitCode], [true, "started\n", "warming\n", 137]);
  assert.match(e.message, /timed out/);
  assert.match(e.message, /warming/);
});

test("api: CommandExitError's message ends with the tail of stderr", async () => {
  await using sb = await Sandbox.create();
  const e = await sb.commands.run(["sh", "-c", "seq 1 20 >&2; echo 'boom: no such thing' >&2; exit 2"], { check: true })
    .catch((e: unknown) => e);
  assert.ok(e instanceof CommandExitError, String(e));
  assert.equal(e.result.timedOut, false);
  assert.match(e.message, /exited with code 2/);
  assert.match(e.message, /boom: no such thing$/);
  assert.doesNotMatch(e.message, /\n1\n/, "the whole stderr went into the message, not its tail");
  const quiet = await sb.commands.run(["false"], { check: true }).then(() => assert.fail("false passed"), (e: Error) => e);
  assert.match(quiet.message, /exited with code 1; its stderr is empty/);
});

test("api: an unread stream never holds up status: 2 MiB on stderr, only stdout read, timeout", async () => {
  await using sb = await Sandbox.create();
  const p = await sb.commands.start(["sh", "-c", "echo out; head -c 2097152 /dev/zero >&2; sleep 100"], { timeoutSeconds: 1 });
  const out = await new Response(p.stdout).text();
  const s = await p.status;
  assert.deepEqual([out, s.timedOut, s.exitCode, s.signal], ["out\n", true, 137, "SIGKILL"]);
  // what stderr holds is bounded (its buffer and a pipe's capacity), and it is all there to read
  let n = 0;
  for await (const chunk of p.stderr) n += chunk.length;
  assert.ok(n > 0 && n <= 2097152, `stderr held ${n} bytes`);
});

test("api: an unread stream never holds up status: a killed chatty process", async () => {
  await using sb = await Sandbox.create();
  const p = await sb.commands.start(["sh", "-c", "head -c 3000000 /dev/zero; sleep 100"]);
  await new Promise((r) => setTimeout(r, 300));
  await p.kill("SIGKILL");
  const s = await p.status;
  assert.equal(s.exitCode, 137);
  await p.stdout.cancel();
});
