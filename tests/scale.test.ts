/**
 * Scale and lifetime: supervisors that idle without waking, a lease that can be moved, an owner killed
 * at any point of a create, and a hundred sandboxes at once. Speed is measured in bench/, not here.
 * `MVM_SCALE_N` (default 100) sets how many sandboxes run at once; `MVM_KILL_POINTS` (default 20) how
 * many points of a create the owner is killed at.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { spawn } from "node:child_process";
import { Sandbox } from "../mod.ts";
import { rootTag } from "../src/engines/local/state.ts";
import { runtimeCommand, sandboxPids, STATE, waitFor } from "./helpers.ts";

/** CPU ticks (user + system) a process and its children have used so far. */
function cpuTicks(pid: number): number {
  const ticks = (p: number | string) => {
    try {
      const s = readFileSync(`/proc/${p}/stat`, "utf8");
      const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
      return Number(f[11]) + Number(f[12]);
    } catch {
      return 0;
    }
  };
  let sum = ticks(pid);
  for (const child of readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(" ").filter(Boolean)) sum += ticks(child);
  return sum;
}

test("scale: an idle sandbox's supervisor never wakes up (its CPU time stays the same over 5 s)", async () => {
  await using sb = await Sandbox.create();
  const { supervisor } = sandboxPids(`${STATE}/${sb.id}`);
  assert.ok(supervisor > 0);
  // let the start-up settle (the first runners, the supervisor's own start)
  await new Promise((r) => setTimeout(r, 500));
  const before = cpuTicks(supervisor);
  await new Promise((r) => setTimeout(r, 5000));
  assert.equal(cpuTicks(supervisor), before, "the supervisor or its watch used CPU while the sandbox was idle");
  assert.equal((await sb.commands.run(["echo", "awake"])).stdout, "awake\n");
});

test("scale: setTtl moves the lease both ways, on the owner's handle and on a connected one", async () => {
  const shorter = await Sandbox.create({ ttl: "10m" });
  const longer = await Sandbox.create({ ttl: 2 });
  try {
    await longer.setTtl("10m");
    {
      await using again = await Sandbox.connect(shorter.id);
      await again.setTtl(1);
      assert.ok(Date.parse((await again.info()).expiresAt) < Date.now() + 5_000);
    }
    assert.ok(await waitFor(() => !existsSync(`${STATE}/${shorter.id}`), 15_000), "a shortened lease did not end the sandbox");
    assert.equal((await shorter.info()).state, "destroyed");
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal((await longer.info()).state, "running", "an extended lease still ended at the old TTL");
    assert.ok(Date.parse((await longer.info()).expiresAt) > Date.now() + 500_000);
    assert.equal((await longer.commands.run(["echo", "still here"])).stdout, "still here\n");
    await assert.rejects(longer.setTtl(0), (e: Error) => e.name === "InvalidInputError");
    await assert.rejects(shorter.setTtl(60), (e: Error) => e.name === "NotFoundError");
  } finally {
    await shorter.destroy();
    await longer.destroy();
  }
});

const POINTS = Number(process.env.MVM_KILL_POINTS ?? 20);

test(`scale: an owner SIGKILLed at any of ${POINTS} points of create() leaves no folder, cgroup or process within 5 s`, async () => {
  const base = `${STATE.replace(/\/sandboxes$/, "")}/kill-create`;
  const root = `${base}/sandboxes`;
  const tag = rootTag(root);
  const cgroups = () => {
    const out: string[] = [];
    for (const top of ["/sys/fs/cgroup", ...readdirSync("/sys/fs/cgroup").map((c) => `/sys/fs/cgroup/${c}`)]) {
      try {
        for (const e of readdirSync(`${top}/mvm/${tag}`)) if (e.startsWith("sbx-")) out.push(`${top}/mvm/${tag}/${e}`);
      } catch { /* none */ }
    }
    return out;
  };
  const folders = () => existsSync(root) ? readdirSync(root).filter((e) => e.startsWith("sbx-")) : [];
  const procs = () =>
    readdirSync("/proc").filter((d) => {
      try {
        return /^\d+$/.test(d) && readFileSync(`/proc/${d}/cmdline`, "utf8").includes(root);
      } catch {
        return false;
      }
    });
  const owner = (killAfterMs: number | null) =>
    new Promise<{ ms: number; created: boolean }>((resolve, reject) => {
      const [cmd, ...args] = runtimeCommand(new URL("./fixtures/scripts/create-hang.ts", import.meta.url).pathname);
      const child = spawn(cmd, args, { env: { ...process.env, MVM_STATE_DIR: base }, stdio: ["ignore", "pipe", "inherit"] });
      let t0 = 0;
      let created = false;
      let text = "";
      child.stdout.on("data", (d: Buffer) => {
        text += d.toString();
        if (!t0 && text.includes("go\n")) {
          t0 = performance.now();
          if (killAfterMs !== null) setTimeout(() => child.kill("SIGKILL"), killAfterMs);
        }
        if (!created && text.includes("created ")) {
          created = true;
          if (killAfterMs === null) child.kill("SIGKILL");
        }
      });
      child.on("error", reject);
      child.on("exit", () => resolve({ ms: performance.now() - t0, created }));
    });
  try {
    // how long a create takes here, in a fresh process (module loading excluded: timed from "go")
    const ref = await owner(null);
    assert.ok(ref.created, "the reference create did not finish");
    const leftovers: string[] = [];
    for (let i = 0; i < POINTS; i++) {
      const at = Math.round((ref.ms * 1.3 * i) / (POINTS - 1));
      await owner(at);
      const clean = await waitFor(() => folders().length === 0 && cgroups().length === 0 && procs().length === 0, 5_000);
      if (!clean) leftovers.push(`killed at ${at} ms: folders ${folders()} cgroups ${cgroups()} processes ${procs()}`);
    }
    assert.deepEqual(leftovers, []);
  } finally {
    await waitFor(() => folders().length === 0 && procs().length === 0, 5_000);
    rmSync(base, { recursive: true, force: true });
  }
});

const N = Number(process.env.MVM_SCALE_N ?? 100);

test(`scale: ${N} sandboxes at once all start, each runs a command, and all are cleaned up`, async () => {
  const made: Sandbox[] = [];
  const failures: string[] = [];
  try {
    // twenty creates in flight at a time: a caller's burst, not a fork bomb
    let next = 0;
    await Promise.all(Array.from({ length: 20 }, async () => {
      while (next < N) {
        const i = next++;
        try {
          made.push(await Sandbox.create({ tags: { scale: String(i) } }));
        } catch (e) {
          failures.push(`create ${i}: ${e}`);
        }
      }
    }));
    assert.deepEqual(failures, []);
    assert.equal(made.length, N);
    const outs = await Promise.all(
      made.map((sb) => sb.commands.run(["cat", "/proc/sys/kernel/hostname"]).then((r) => r.stdout.trim(), (e) => `${e}`)),
    );
    assert.deepEqual(outs, made.map((sb) => sb.id));
  } finally {
    await Promise.all(made.map((sb) => sb.destroy().catch(() => {})));
  }
  assert.deepEqual(made.filter((sb) => existsSync(`${STATE}/${sb.id}`)).map((sb) => sb.id), []);
});
