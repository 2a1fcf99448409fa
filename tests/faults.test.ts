/**
 * Fault injection against real sandboxes: host-side helpers and the supervisor killed mid-operation.
 * Nothing may report a success it did not see, and nothing half-written may be committed.
 * `MVM_FAULT_RUNS` (default 3) sets how many times each kill point is tried.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import process from "node:process";
import { test } from "node:test";
import { Sandbox, SandboxError, TransportError } from "../mod.ts";
import { sandboxPids, STATE, waitFor } from "./helpers.ts";

const RUNS = Number(process.env.MVM_FAULT_RUNS ?? 3);

/** Host-side nsenter processes that lead into this sandbox (its runners and agents). */
function nsentersOf(id: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const argv = readFileSync(`/proc/${d}/cmdline`, "utf8").split("\0");
      if (argv[0].endsWith("/nsenter") && argv.includes(id)) out.push(Number(d));
    } catch { /* gone */ }
  }
  return out;
}

/** A stream of `total` bytes in 64 KiB chunks, slow enough to be interrupted. */
function slowBytes(total: number): ReadableStream<Uint8Array> {
  let sent = 0;
  const chunk = new Uint8Array(65536).fill(0x61);
  return new ReadableStream({
    async pull(c) {
      if (sent >= total) return c.close();
      if (sent % (1 << 22) === 0) await new Promise((r) => setTimeout(r, 5));
      sent += chunk.length;
      c.enqueue(chunk);
    },
  }, { highWaterMark: 0 });
}

test(`faults: killing the host-side helpers mid files.write never commits a half file (${RUNS} runs)`, async () => {
  await using sb = await Sandbox.create();
  await sb.files.write("/app/f.bin", "old");
  for (let i = 0; i < RUNS; i++) {
    const writing = sb.files.write("/app/f.bin", slowBytes(200 << 20)).then(() => null, (e) => e);
    // wait until the agent's nsenter is there and data flows, then kill every helper of this sandbox
    await new Promise((r) => setTimeout(r, 150 + 50 * i));
    for (const pid of nsentersOf(sb.id)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch { /* gone */ }
    }
    const err = await writing;
    const now = await sb.files.readText("/app/f.bin").catch(() => "?");
    if (err === null) {
      // the write finished before the kill landed: then it is whole
      assert.equal((await sb.files.stat("/app/f.bin")).size, 200 << 20, `run ${i}: reported success for a partial file`);
      await sb.files.write("/app/f.bin", "old");
    } else {
      assert.ok(err instanceof SandboxError, `run ${i}: untyped failure ${err}`);
      assert.equal(now, "old", `run ${i}: a failed write changed the file`);
    }
    const left = (await sb.files.list("/app")).filter((f) => f.name.startsWith(".mvm-write."));
    assert.deepEqual(left, [], `run ${i}: temporary files left behind`);
  }
});

test(`faults: a killed supervisor ends an open output stream with a TransportError and info() says destroyed (${RUNS} runs)`, async () => {
  for (let i = 0; i < RUNS; i++) {
    const sb = await Sandbox.create();
    try {
      const p = await sb.commands.start(["sh", "-c", "yes mvm | head -c 200000000"]);
      const reader = p.stdout.getReader();
      let got = 0;
      while (got < 1 << 20) got += (await reader.read()).value?.length ?? 0;
      process.kill(sandboxPids(`${STATE}/${sb.id}`).supervisor, "SIGKILL");
      const end = await (async () => {
        for (;;) {
          const r = await reader.read();
          if (r.done) return "closed";
        }
      })().catch((e) => e);
      assert.ok(end instanceof TransportError, `run ${i}: the stream ended as ${end} after ${got} bytes`);
      await assert.rejects(p.status, TransportError);
      assert.ok(await waitFor(() => true, 10));
      assert.equal((await sb.info()).state, "destroyed");
      await assert.rejects(sb.commands.run(["true"]), (e: unknown) => e instanceof SandboxError && e.code !== "INTERNAL");
    } finally {
      await sb.destroy().catch(() => {});
    }
  }
});

const fdCount = () => readdirSync("/proc/self/fd").length;
const CYCLES = Number(process.env.MVM_FAULT_CYCLES ?? 40);

test(`faults: descriptors of this process stay flat over ${CYCLES} create/destroy cycles and ${CYCLES} start() handles left unread`, async () => {
  // warm up the runtime's own descriptors (thread pools, the first spawn)
  await (await Sandbox.create()).destroy();
  const before = fdCount();
  for (let i = 0; i < CYCLES; i++) await (await Sandbox.create()).destroy();
  await using sb = await Sandbox.create();
  for (let i = 0; i < CYCLES; i++) {
    const p = await sb.commands.start(["true"]);
    await p.status;
    await p[Symbol.asyncDispose]();
  }
  await sb.commands.run(["true"]);
  const after = fdCount();
  // a leak of even one descriptor a cycle shows as 40 or more; the warm pool's spare sandbox (its
  // supervisor's pipe and two runners' pipes, more while the next spare is being made) moves the count by up to ~15
  assert.ok(after - before <= 20, `descriptors grew from ${before} to ${after}`);
});

test(`faults: a supervisor killed right after create (a runner still being spawned) gives typed errors, never a hang (${RUNS} runs)`, async () => {
  for (let i = 0; i < RUNS; i++) {
    const sb = await Sandbox.create();
    try {
      process.kill(sandboxPids(`${STATE}/${sb.id}`).supervisor, "SIGKILL");
      const r = await Promise.race([
        sb.commands.run(["true"]).then(() => "ran", (e) => e),
        new Promise((res) => setTimeout(() => res("hang"), 20_000)),
      ]);
      assert.ok(r === "ran" || (r instanceof SandboxError && r.code !== "INTERNAL"), `run ${i}: ${r}`);
      await assert.rejects(sb.files.read("/app/x"), (e: unknown) => e instanceof SandboxError && e.code !== "INTERNAL");
    } finally {
      await sb.destroy().catch(() => {});
    }
  }
});
