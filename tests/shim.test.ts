// The runtime shim against real processes, on whichever runtime runs the suite.
import { test } from "node:test";
import assert from "node:assert/strict";
import { runtime } from "../src/runtime/mod.ts";
import { NotFoundError } from "../mod.ts";
import { collectText } from "../src/streams.ts";
import { rss, RUNTIME, sha256Stream } from "./helpers.ts";

test("shim: picks the runtime it runs on", () => {
  assert.equal(runtime().name, RUNTIME);
});

test("shim: stdin round-trips through cat", async () => {
  const c = await runtime().spawn("cat", [], { stdin: "piped" });
  const w = c.stdin!.getWriter();
  const payload = "x".repeat(300_000) + "\nend\n";
  const out = collectText(c.stdout!);
  await w.write(new TextEncoder().encode(payload));
  await w.close();
  assert.equal(await out, payload);
  assert.deepEqual(await c.status, { code: 0, signal: null });
});

test("shim: exit codes and signals are reported apart", async () => {
  const a = await runtime().spawn("sh", ["-c", "exit 7"]);
  assert.deepEqual(await a.status, { code: 7, signal: null });
  const b = await runtime().spawn("sh", ["-c", "kill -TERM $$"]);
  assert.deepEqual(await b.status, { code: null, signal: "SIGTERM" });
});

test("shim: kill ends a running child with the signal", async () => {
  const c = await runtime().spawn("sleep", ["30"], { stdout: "null", stderr: "null" });
  c.kill("SIGKILL");
  assert.deepEqual(await c.status, { code: null, signal: "SIGKILL" });
  c.kill("SIGKILL"); // after exit: a no-op, no throw
});

test("shim: AbortSignal kills the child", async () => {
  const ac = new AbortController();
  const c = await runtime().spawn("sleep", ["30"], { stdout: "null", stderr: "null", signal: ac.signal });
  ac.abort();
  assert.equal((await c.status).signal, "SIGKILL");
});

test("shim: an AbortSignal aborted before the spawn kills the child at once", async () => {
  const c = await runtime().spawn("sleep", ["30"], { stdout: "null", stderr: "null", signal: AbortSignal.abort() });
  assert.equal((await c.status).signal, "SIGKILL");
});

test("shim: clearEnv gives the child only what was passed", async () => {
  const c = await runtime().spawn("/usr/bin/env", [], { clearEnv: true, env: { ONLY: "1" } });
  assert.equal((await collectText(c.stdout!)).trim(), "ONLY=1");
  const d = await runtime().spawn("/usr/bin/env", [], { env: { EXTRA: "2" } });
  const text = await collectText(d.stdout!);
  assert.match(text, /^EXTRA=2$/m);
  assert.match(text, /^PATH=/m);
});

test("shim: cwd is honoured", async () => {
  const c = await runtime().spawn("pwd", [], { cwd: "/usr" });
  assert.equal((await collectText(c.stdout!)).trim(), "/usr");
});

test("shim: a missing binary is a typed NOT_FOUND error", async () => {
  await assert.rejects(runtime().spawn("mvm-no-such-binary-xyz", []), (e: unknown) => {
    assert.ok(e instanceof NotFoundError);
    assert.equal(e.code, "NOT_FOUND");
    assert.match(e.message, /mvm-no-such-binary-xyz/);
    return true;
  });
});

test("shim: 200 MB of stdout read slowly arrives intact with bounded memory", async () => {
  const N = 200_000_000;
  const gen = "seq 1 30000000 | head -c " + N;
  const ref = await runtime().spawn("sh", ["-c", `${gen} | sha256sum`]);
  const expected = (await collectText(ref.stdout!)).split(" ")[0];
  // warm up: the runtime's young generation grows once to its working size; that is not buffering
  const warm = await runtime().spawn("sh", ["-c", "head -c 50000000 /dev/zero"]);
  await sha256Stream(warm.stdout!, 32);
  const before = rss();
  let peak = before;
  const c = await runtime().spawn("sh", ["-c", gen]);
  const timer = setInterval(() => peak = Math.max(peak, rss()), 20);
  const got = await sha256Stream(c.stdout!, 32);
  clearInterval(timer);
  peak = Math.max(peak, rss());
  assert.equal(got.bytes, N);
  assert.equal(got.hex, expected);
  assert.equal((await c.status).code, 0);
  assert.ok(peak - before < 64 * 1024 * 1024, `memory grew by ${((peak - before) / 1048576).toFixed(1)} MB`);
});
