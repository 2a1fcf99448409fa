// The lifecycle suite a second time, through the mvmctl engine (engine: "mvmctl") with MVM_CLI_BIN
// pointing at OUR CLI (src/cli.ts, whose `machine` verbs speak upstream's argv over the local
// engine): real sandboxes, every operation a CLI call. Tests needing a capability this path lacks
// are skipped with the reason printed.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import process from "node:process";
import {
  CommandExitError,
  ConflictError,
  InvalidInputError,
  NotFoundError,
  Sandbox,
  Snapshot,
  UnsupportedError,
  verifyAudit,
} from "../mod.ts";
import { collectText } from "../src/streams.ts";
import { collect, runtimeCommand, sha256Stream, STATE, waitFor } from "./helpers.ts";

const CLI = new URL("../src/cli.ts", import.meta.url).pathname;
const BIN_DIR = mkdtempSync(`${tmpdir()}/mvm-cli-bin-`);
const BIN = `${BIN_DIR}/mvmctl`;
const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
// the CLI runs under the tests' runtime, or under Bun with MVM_TEST_CLI_RUNTIME=bun (scripts/test.sh sets it on Deno's
// lane: a machine verb is one CLI process, which Deno starts in ~0.5 s and Bun in ~0.1 s; tests/cli.test.ts runs the CLI
// on each runtime)
const cliArgv = process.env.MVM_TEST_CLI_RUNTIME === "bun"
  ? [process.env.MVM_TEST_BUN || new URL("../node_modules/.bin/bun", import.meta.url).pathname, CLI]
  : runtimeCommand(CLI);
writeFileSync(BIN, `#!/bin/sh\nexec ${cliArgv.map(q).join(" ")} "$@"\n`);
chmodSync(BIN, 0o755);
const saved = process.env.MVM_CLI_BIN;
process.env.MVM_CLI_BIN = BIN;
after(() => {
  if (saved === undefined) delete process.env.MVM_CLI_BIN;
  else process.env.MVM_CLI_BIN = saved;
  rmSync(BIN_DIR, { recursive: true, force: true });
});

const TAG = `live${Date.now() % 1_000_000}`;
const create = (o: Parameters<typeof Sandbox.create>[0] & object = {}) =>
  Sandbox.create({ engine: "mvmctl", ttl: "10m", ...o, tags: { suite: TAG, ...(o.tags ?? {}) } });

function skipBecause(name: string, reason: string): void {
  test(`mvmctl live: ${name} (skipped: ${reason})`, { skip: true }, () => {});
  console.log(`mvmctl live: skipped "${name}": ${reason}`);
}

test("mvmctl live: the seed's first example runs through our CLI", async () => {
  await using sb = await create({ workloadId: "agent-tool" });
  assert.equal(sb.engine, "mvmctl");
  assert.match(sb.id, /^sbx-/);
  await sb.files.write("/app/main.py", "print('hello from mvm')");
  const r = await sb.commands.run(["python3", "/app/main.py"], { timeoutSeconds: 30 });
  assert.deepEqual([r.stdout, r.exitCode], ["hello from mvm\n", 0]);
  const info = await sb.info();
  assert.deepEqual([info.state, info.engine, info.tags.suite], ["running", "mvmctl", TAG]);
});

test("mvmctl live: exit codes, stderr, env, cwd, stdin, check; bad input refused", async () => {
  await using sb = await create();
  const r = await sb.commands.run(["sh", "-c", 'echo "$A $(pwd)"; cat; echo e >&2; exit 3'], {
    env: { A: "x" },
    cwd: "/app",
    stdin: "in\n",
  });
  assert.deepEqual([r.stdout, r.stderr, r.exitCode, r.signal], ["x /app\nin\n", "e\n", 3, null]);
  await assert.rejects(sb.commands.run(["false"], { check: true }), CommandExitError);
  await assert.rejects(sb.commands.run(["true"], { env: { LD_PRELOAD: "/x.so" } }), InvalidInputError);
  await assert.rejects(sb.commands.run(["true"], { cwd: "/nope" }), NotFoundError);
});

test("mvmctl live: start gives streams both ways; kill, timeout and abort reach the process", async () => {
  await using sb = await create();
  const p = await sb.commands.start(["tr", "a-z", "A-Z"]);
  const w = p.stdin.getWriter();
  await w.write(new TextEncoder().encode("hello"));
  await w.close();
  assert.equal(await collectText(p.stdout), "HELLO");
  assert.equal((await p.status).exitCode, 0);
  const k = await sb.commands.start(["sh", "-c", "sleep 300 & wait"]);
  await k.kill("SIGKILL");
  assert.deepEqual([(await k.status).signal, (await k.status).exitCode], ["SIGKILL", 137]);
  const t = await sb.commands.run(["sleep", "300"], { timeoutSeconds: 1 });
  assert.equal(t.timedOut, true);
  const ac = new AbortController();
  const a = await sb.commands.start(["sleep", "300"], { signal: ac.signal });
  ac.abort();
  assert.equal((await a.status).signal, "SIGKILL");
});

test("mvmctl live: 20 MB of stdout arrive intact; status only after every byte", async () => {
  await using sb = await create();
  const p = await sb.commands.start(["sh", "-c", "head -c 20971520 /dev/zero | tr '\\0' 'y'"]);
  p.stdin.close().catch(() => {});
  const [got, s] = await Promise.all([sha256Stream(p.stdout, 16), p.status]);
  assert.equal(got.bytes, 20971520);
  assert.equal(s.exitCode, 0);
  const r = await sb.commands.run(["seq", "1", "50000"]);
  assert.equal(r.stdout.split("\n").length, 50001);
});

test("mvmctl live: files: write, read (past a 16 MiB window), ranges, stat, list, mkdir, rename, remove, errors", async () => {
  await using sb = await create();
  const big = new Uint8Array(17 * 1024 * 1024 + 123);
  for (let i = 0; i < big.length; i += 4096) big[i] = i % 251;
  await sb.files.write("/app/big.bin", big);
  const back = await sb.files.read("/app/big.bin");
  assert.equal(back.length, big.length);
  assert.ok(back.every((b, i) => b === big[i]), "the bytes came back as written");
  await sb.files.write("/app/t.txt", "0123456789");
  const part = await collectText(await sb.files.readStream("/app/t.txt", { offset: 2, length: 5 }));
  assert.equal(part, "23456");
  const st = await sb.files.stat("/app/t.txt");
  assert.deepEqual([st.type, st.size, st.name], ["file", 10, "t.txt"]);
  await sb.files.mkdir("/app/a/b/c");
  assert.equal((await sb.files.stat("/app/a/b/c")).type, "dir");
  assert.deepEqual((await sb.files.list("/app")).map((f) => f.name).sort(), ["a", "big.bin", "t.txt"]);
  await sb.files.rename("/app/t.txt", "/app/a/t2.txt");
  assert.equal(await sb.files.readText("/app/a/t2.txt"), "0123456789");
  assert.equal(await sb.files.exists("/app/t.txt"), false);
  await sb.files.remove("/app/a", { recursive: true });
  assert.equal(await sb.files.exists("/app/a"), false);
  await assert.rejects(sb.files.read("/app/missing"), NotFoundError);
  await assert.rejects(sb.files.stat("/app/missing"), NotFoundError);
});

test("mvmctl live: logs, stop (state explicit, wrong-state calls CONFLICT), destroy (then NOT_FOUND)", async () => {
  const sb = await create();
  try {
    await sb.commands.run(["true"]);
    const types: string[] = [];
    for await (const ev of sb.logs()) types.push(ev.type);
    assert.ok(types.includes("created") && types.includes("process.exited"), types.join(","));
    await sb.stop();
    assert.equal((await sb.info()).state, "stopped");
    await assert.rejects(sb.commands.run(["true"]), ConflictError);
  } finally {
    await sb.destroy();
  }
  await assert.rejects(Sandbox.connect(sb.id, { engine: "mvmctl" }), NotFoundError);
});

test("mvmctl live: connect and list by tags from this process; TTL ends a machine", async () => {
  // 8 s: long enough for the connect, command and list below on a loaded machine (4 s once ran out first)
  const sb = await create({ tags: { pick: "me" }, ttl: 8 });
  const again = await Sandbox.connect(sb.id, { engine: "mvmctl" });
  assert.equal((await again.commands.run(["echo", "again"])).stdout, "again\n");
  const listed = await Sandbox.list({ engine: "mvmctl", tags: { suite: TAG, pick: "me" } });
  assert.deepEqual(listed.map((i) => i.id), [sb.id]);
  let gone = false;
  for (const end = Date.now() + 20_000; Date.now() < end && !gone;) {
    gone = (await Sandbox.list({ engine: "mvmctl", tags: { pick: "me", suite: TAG } })).length === 0;
    if (!gone) await new Promise((r) => setTimeout(r, 500));
  }
  assert.ok(gone, "the machine outlived its TTL");
});

test("mvmctl live: what machine run cannot carry is refused before any call", async () => {
  await assert.rejects(create({ env: { A: "1" } }), UnsupportedError);
  await assert.rejects(create({ memoryMb: 128 }), UnsupportedError);
  assert.equal((await Sandbox.list({ engine: "mvmctl", tags: { suite: TAG } })).length, 0, "nothing was left running");
});

skipBecause("OOM kills are reported (oomKilled)", "machine run has no memory flag, so memoryMb is refused on this path");
skipBecause("pidsLimit stops a fork bomb", "machine run has no pids flag");
test("mvmctl live: results carry audit ids naming signed entries of the SDK side's chain, beside our CLI's own", async () => {
  await using sb = await create();
  const r = await sb.commands.run(["true"]);
  const w = await sb.files.write("/app/a.txt", "a");
  const entries = new Map((await collect(sb.audit())).map((e) => [e.id, e]));
  assert.equal(entries.get(r.auditId)?.event, "process.exited");
  assert.equal(entries.get(w.auditId)?.event, "files.write");
  assert.equal(entries.get(r.auditId)?.labels.engine, "mvmctl");
  // the same state root: our CLI's local engine recorded the same machine's operations in the same chain
  assert.ok([...entries.values()].some((e) => e.event === "process.exited" && e.labels.engine === undefined));
  const report = await verifyAudit();
  assert.equal(report.status, "VERIFIED", JSON.stringify(report.firstBad));
});
skipBecause("a SIGKILLed owner takes its sandbox with it", "machines boot detached (machine run -d) and live until their TTL or rm");
test("mvmctl live: pause stops a counter (machine pause), resume lets it go on (machine resume); paused refuses commands", async () => {
  await using sb = await create();
  assert.equal(sb.capabilities().pause, true);
  // the counter the guest writes to /app/n, read on the host from the sandbox's folder (our CLI's local engine)
  const file = `${STATE}/${sb.id}/root/app/n`;
  const counter = (): number => {
    for (;;) {
      try {
        const t = readFileSync(file, "utf8").trim();
        if (t) return Number(t);
      } catch { /* between the guest's rename and the next */ }
    }
  };
  const p = await sb.commands.start(["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /app/n.t; mv /app/n.t /app/n; sleep 0.005; done"]);
  assert.ok(await waitFor(() => existsSync(file), 10_000), "the counter never started");
  for (let cycle = 0; cycle < 2; cycle++) {
    const from = counter();
    assert.ok(await waitFor(() => counter() > from, 5000, 10), `cycle ${cycle}: the counter does not run before pausing`);
    await sb.pause();
    assert.equal(sb.state, "paused");
    const frozen = counter();
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(counter(), frozen, `cycle ${cycle}: the counter moved while paused`);
    assert.equal((await sb.info()).state, "paused");
    if (cycle === 0) await assert.rejects(sb.commands.run(["true"]), ConflictError);
    await sb.resume();
    assert.equal((await sb.info()).state, "running");
    assert.ok(await waitFor(() => counter() > frozen, 5000, 10), `cycle ${cycle}: the counter did not go on after resume`);
  }
  await assert.rejects(sb.pause({ toDisk: true }), UnsupportedError);
  await p.kill("SIGKILL");
});

test("mvmctl live: setTtl (machine set-ttl) moves the lease; a short one ends the machine", async () => {
  const sb = await create({ tags: { ttl: "set" } });
  try {
    const before = Date.parse((await sb.info()).expiresAt);
    await sb.setTtl("1h");
    const after = Date.parse((await sb.info()).expiresAt);
    assert.ok(after - before > 40 * 60_000, `expiresAt moved from ${before} to ${after}`);
    await assert.rejects(sb.setTtl("soon"), InvalidInputError);
    await sb.setTtl(2);
    const gone = await waitForAsync(
      async () => (await Sandbox.list({ engine: "mvmctl", tags: { suite: TAG, ttl: "set" } })).length === 0,
      15_000,
    );
    assert.ok(gone, "the machine outlived the TTL set on it");
  } finally {
    await sb.destroy().catch(() => {});
  }
});

async function waitForAsync(fn: () => Promise<boolean>, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end;) {
    if (await fn()) return true;
    await new Promise((r) => setTimeout(r, 500));
  }
  return false;
}

test("mvmctl live: snapshot (machine checkpoint create) and fork (checkpoint fork --boot): the fork sees the file, both sides change independently", async () => {
  await using sb = await create();
  await sb.files.write("/app/n.txt", "1");
  const child = await sb.fork();
  let snapId = child.restoredFrom?.snapshotId;
  try {
    assert.equal(child.engine, "mvmctl");
    assert.equal(await child.files.readText("/app/n.txt"), "1");
    await child.files.write("/app/n.txt", "2");
    await sb.files.write("/app/n.txt", "3");
    assert.deepEqual([await sb.files.readText("/app/n.txt"), await child.files.readText("/app/n.txt")], ["3", "2"]);
    const snap = (await Snapshot.list({ engine: "mvmctl" })).find((s) => s.id === snapId);
    assert.deepEqual([snap?.sandboxId, snap?.class], [sb.id, "fs_quick"]);
    assert.ok(snap?.digests.content.some((c) => c.name === "app/n.txt"), "the checkpoint lists the file");
    // the local engine's probe finds no memory checkpoint tool here: our CLI exits non-zero with its reason
    await assert.rejects(sb.snapshot({ class: "vm_full" }), (e: unknown) => e instanceof UnsupportedError && /vm_full/.test(e.message));
  } finally {
    await child.destroy().catch(() => {});
    if (snapId) await Snapshot.delete(snapId, { engine: "mvmctl" }).catch(() => {});
    snapId = undefined;
  }
});
skipBecause(
  "prod machines refuse guest verbs",
  "our CLI boots dev machines only; the refusal is tested against the stand-in in tests/mvmctl.test.ts",
);
