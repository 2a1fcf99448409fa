// Detached commands on the local engine (commands.start({ detached: true }), commands.list(),
// commands.connect(id)): they outlive the process that started them, can be re-attached from other
// handles and processes (output from the start or from where the reader joins), take stdin and
// signals through any handle, keep their spool bounded, and are removed with their sandbox.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, statSync } from "node:fs";
import { ConflictError, InvalidInputError, NotFoundError, Sandbox, UnsupportedError } from "../mod.ts";
import { runtime } from "../src/runtime/mod.ts";
import { collectText } from "../src/streams.ts";
import { SEGMENT, SPOOL_CAP } from "../src/engines/local/spool.ts";
import { processAlive, runtimeCommand, sha256Stream, STATE, waitFor } from "./helpers.ts";

const FIX = new URL("./fixtures/", import.meta.url).pathname;
const text = (s: string) => new TextEncoder().encode(s);

test("detached commands: list, connect from the start, stdin and kill through another handle", async () => {
  await using sb = await Sandbox.create();
  const p = await sb.commands.start(["sh", "-c", "echo one; echo err >&2; exit 4"], { detached: true });
  assert.match(p.id!, /^cmd-[a-z0-9]{12}$/);
  const q = await sb.commands.connect(p.id!, { from: "start" });
  const [a, b] = await Promise.all([p.output(), q.output()]);
  assert.deepEqual([a.stdout, a.stderr, a.exitCode], ["one\n", "err\n", 4]);
  assert.deepEqual([b.stdout, b.stderr, b.exitCode], ["one\n", "err\n", 4]);
  const [info] = await sb.commands.list();
  assert.deepEqual([info!.id, info!.argv0, info!.argc, info!.running, info!.status?.exitCode], [p.id, "sh", 3, false, 4]);

  const cat = await sb.commands.start(["cat"], { detached: true });
  const other = await sb.commands.connect(cat.id!);
  const w = other.stdin.getWriter();
  await w.write(text("abc"));
  await w.close();
  await assert.rejects((await sb.commands.connect(cat.id!)).stdin.getWriter().write(text("x")), ConflictError);
  assert.equal((await cat.output()).stdout, "abc");

  const sleeper = await sb.commands.start(["sleep", "300"], { detached: true });
  assert.equal((await sb.commands.list()).find((c) => c.id === sleeper.id)?.running, true);
  await (await sb.commands.connect(sleeper.id!)).kill("SIGKILL");
  const s = await sleeper.status;
  assert.deepEqual([s.signal, s.exitCode], ["SIGKILL", 137]);

  await assert.rejects(sb.commands.connect("cmd-000000000000"), NotFoundError);
  await assert.rejects(sb.commands.connect("../../etc"), InvalidInputError);
  await assert.rejects(sb.commands.start(["true"], { detached: true, signal: new AbortController().signal }), UnsupportedError);
});

test("detached commands: one outlives the process that started it; another process re-attaches to it", async () => {
  const [cmd, ...pre] = runtimeCommand(`${FIX}scripts/detached-cmd.ts`);
  const c = await runtime().spawn(cmd!, pre, { stderr: "piped" });
  const [out, err, st] = await Promise.all([collectText(c.stdout!), collectText(c.stderr!), c.status]);
  assert.equal(st.code, 0, err);
  const [sid, cid] = out.trim().split(" ");
  const sb = await Sandbox.connect(sid!);
  try {
    const listed = await sb.commands.list();
    assert.deepEqual(listed.map((x) => [x.id, x.running]), [[cid, true]], "the command outlived its starter");
    const p = await sb.commands.connect(cid!, { from: "start" });
    const w = p.stdin.getWriter();
    await w.write(text("hello\n"));
    await w.close();
    const r = await p.output();
    assert.deepEqual([r.stdout, r.stderr, r.exitCode], ["before\ngot:hello\n", "bye\n", 7]);
  } finally {
    await sb.destroy();
  }
});

test("detached commands: the spool stays bounded without a reader, loses nothing, and goes with the sandbox", async () => {
  const sb = await Sandbox.create();
  try {
    // 24 MiB of output, with nobody reading at first
    const p = await sb.commands.start(["sh", "-c", "head -c 25165824 /dev/zero | tr '\\0' 'x'"], { detached: true });
    const spool = `${STATE}/${sb.id}/procs/${p.id}`;
    const size = (f: string) => {
      try {
        return statSync(`${spool}/${f}`).size;
      } catch {
        return 0; // a segment the reader passed, deleted meanwhile
      }
    };
    const spoolBytes = () => readdirSync(spool).filter((f) => f.startsWith("out.")).reduce((n, f) => n + size(f), 0);
    // the keeper fills the spool up to its bound and then holds the command (it cannot finish unread)
    assert.ok(await waitFor(() => spoolBytes() >= SPOOL_CAP, 20_000), `the spool never filled: ${spoolBytes()}`);
    assert.equal((await sb.commands.list())[0]!.running, true);
    let most = 0;
    const sampler = setInterval(() => most = Math.max(most, spoolBytes()), 5);
    const q = await sb.commands.connect(p.id!, { from: "start" });
    const got = await sha256Stream(q.stdout, 8);
    clearInterval(sampler);
    assert.equal(got.bytes, 25165824, "every byte arrived");
    assert.ok(most <= SPOOL_CAP + SEGMENT, `the spool held ${most} bytes, over its bound`);
    assert.equal((await q.status).exitCode, 0);
    const keeper = JSON.parse(await (await import("node:fs/promises")).readFile(`${spool}/meta.json`, "utf8")).keeperPid;
    assert.ok(await waitFor(() => !processAlive(keeper), 5000), "the keeper left once its command ended");
    const live = await sb.commands.start(["sleep", "300"], { detached: true });
    const liveKeeper =
      JSON.parse(await (await import("node:fs/promises")).readFile(`${STATE}/${sb.id}/procs/${live.id}/meta.json`, "utf8")).keeperPid;
    await sb.destroy();
    assert.equal(existsSync(`${STATE}/${sb.id}`), false, "the spools went with the sandbox");
    assert.ok(await waitFor(() => !processAlive(liveKeeper), 5000), "a keeper outlived its sandbox");
  } finally {
    await sb.destroy();
  }
});
