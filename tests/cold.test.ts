// Cold mode on the local engine, against real sandboxes: pause/resume through the cgroup freezer (v2's
// cgroup.freeze, and the v1 freezer controller, chosen by MVM_FREEZER at create, where the host has both),
// the states and events it shows, and that parent death and TTL still clean up a paused sandbox.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import process from "node:process";
import {
  ConflictError,
  type LogEvent,
  NetworkPolicy,
  NotFoundError,
  Sandbox,
  TransportError,
  UnsupportedError,
  verifyAudit,
} from "../mod.ts";
import { readAudit } from "../src/audit.ts";
import { probeCheckpointTool } from "../src/engines/local/checkpoint.ts";
import { detectCgroups } from "../src/engines/local/cgroups.ts";
import { runtime } from "../src/runtime/mod.ts";
import { collectText } from "../src/streams.ts";
import { collect, egressPids, firstLine, processAlive, runtimeCommand, sandboxPids, STATE, waitFor } from "./helpers.ts";

const FIX = new URL("./fixtures/", import.meta.url).pathname;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The counter the guest writes to /app/n, read on the host from the sandbox's folder. */
function counter(id: string): number {
  for (;;) {
    try {
      const t = readFileSync(`${STATE}/${id}/root/app/n`, "utf8").trim();
      if (t) return Number(t);
    } catch { /* between the guest's rename and the next */ }
  }
}

/** Waits until the counter moves past `from`; false if it did not within `ms`. */
function advances(id: string, from: number, ms = 5000): Promise<boolean> {
  return waitFor(() => counter(id) > from, ms, 10);
}

/** Which freezers this host offers (the engine's own detection), for the tests that run through each. */
const layout = await detectCgroups();
const FREEZERS = [layout?.v2Freeze && "v2", layout?.v1.freezer && "v1"].filter((f): f is "v1" | "v2" => !!f);

/** Creates a sandbox whose pause() uses the given freezer (MVM_FREEZER is read at create). */
async function createWith(freezer: "v1" | "v2"): Promise<Sandbox> {
  const before = process.env.MVM_FREEZER;
  process.env.MVM_FREEZER = freezer;
  try {
    return await Sandbox.create();
  } finally {
    if (before === undefined) delete process.env.MVM_FREEZER;
    else process.env.MVM_FREEZER = before;
  }
}

/** The v1 freezer group a sandbox joined, from its supervisor's list of groups. */
function v1Group(id: string): string | undefined {
  return readFileSync(`${STATE}/${id}/cgroups`, "utf8").split("\n").find((l) =>
    layout?.v1.freezer && l.startsWith(`${layout.v1.freezer}/`)
  );
}

/**
 * A gone sandbox's ending as the signed chain has it, read after `touch` (an SDK call that takes in what
 * supervisors recorded): its supervisor's `started` and `destroyed` (with the reason), the chain verified.
 */
async function chainedEnd(id: string, touch: () => Promise<unknown>): Promise<{ events: string[]; reason: unknown }> {
  await touch();
  const entries = await collect(readAudit(`${STATE.replace(/\/sandboxes$/, "")}/audit`, { sandbox: id }));
  const sup = entries.filter((e) => e.labels.source === "supervisor");
  return { events: sup.map((e) => e.event), reason: sup.find((e) => e.event === "destroyed")?.data?.reason };
}

/** Everything of a sandbox the host can see: its folder, its supervisor and init, its cgroups. */
function remains(id: string): () => boolean {
  const dir = `${STATE}/${id}`;
  const cg = readFileSync(`${dir}/cgroups`, "utf8").trim().split("\n").filter((l) => l && l !== "-");
  const { reaper, supervisor } = sandboxPids(dir);
  return () => existsSync(dir) || processAlive(reaper) || processAlive(supervisor) || cg.some((d) => existsSync(d));
}

for (const freezer of FREEZERS) {
  test(`cold: a counter stops while paused and goes on after resume, 10 cycles (${freezer} freezer)`, () => counterCycles(freezer));
}

async function counterCycles(freezer: "v1" | "v2"): Promise<void> {
  await using sb = await createWith(freezer);
  const group = v1Group(sb.id);
  assert.equal(group !== undefined, freezer === "v1", `the sandbox joined a v1 freezer group: ${group}`);
  const p = await sb.commands.start(["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /app/n.t; mv /app/n.t /app/n; sleep 0.005; done"]);
  assert.ok(await waitFor(() => existsSync(`${STATE}/${sb.id}/root/app/n`), 5000));
  for (let cycle = 0; cycle < 10; cycle++) {
    assert.ok(await advances(sb.id, counter(sb.id)), `cycle ${cycle}: the counter does not run before pausing`);
    const pauseId = await sb.pause();
    assert.match(pauseId, /^aud_/);
    assert.equal(sb.state, "paused");
    const frozen = counter(sb.id);
    if (group) assert.equal(readFileSync(`${group}/freezer.state`, "utf8").trim(), "FROZEN");
    await sleep(100);
    assert.equal(counter(sb.id), frozen, `cycle ${cycle}: the counter moved while paused`);
    assert.equal((await sb.info()).state, "paused");
    await sb.resume();
    assert.equal(sb.state, "running");
    assert.ok(await advances(sb.id, frozen), `cycle ${cycle}: the counter did not go on after resume`);
  }
  await p.kill("SIGKILL");
  assert.equal((await p.status).signal, "SIGKILL");
  const types = (await collect(sb.logs())).map((e: LogEvent) => e.type);
  assert.equal(types.filter((t) => t === "paused").length, 10);
  assert.equal(types.filter((t) => t === "resumed").length, 10);
}

test("cold: a paused sandbox refuses commands and files with CONFLICT naming the state, unless { resume: true }", async () => {
  await using sb = await Sandbox.create();
  await sb.files.write("/app/a.txt", "a");
  await sb.pause();
  for (
    const op of [
      () => sb.commands.run(["true"]),
      () => sb.files.readText("/app/a.txt"),
      () => sb.files.write("/app/b.txt", "b"),
      () => sb.files.list("/app"),
    ]
  ) {
    await assert.rejects(op(), (e: unknown) => {
      assert.ok(e instanceof ConflictError, String(e));
      assert.match(e.message, /is paused/);
      assert.match(e.message, /resume/);
      assert.equal((e.details as { state: string }).state, "paused");
      return true;
    });
  }
  // another handle sees the same state
  {
    const other = await Sandbox.connect(sb.id);
    assert.equal((await other.info()).state, "paused");
    await other.disconnect();
  }
  const r = await sb.commands.run(["cat", "/app/a.txt"], { resume: true });
  assert.equal(r.stdout, "a");
  assert.equal((await sb.info()).state, "running");
  await sb.pause();
  await sb.files.write("/app/b.txt", "b", { resume: true });
  assert.equal(await sb.files.readText("/app/b.txt"), "b");
  // pause twice and resume twice change nothing; memory to disk is refused with a reason
  await sb.pause();
  await sb.pause();
  assert.equal((await sb.info()).state, "paused");
  await sb.resume();
  await sb.resume();
  assert.equal((await sb.info()).state, "running");
  await assert.rejects(sb.pause({ toDisk: true }), (e: unknown) => e instanceof UnsupportedError && /CRIU/.test(e.message));
  assert.equal(sb.capabilities().pauseToDisk, false);
  assert.equal((await sb.info()).state, "running");
  const types = (await collect(sb.logs())).map((e: LogEvent) => e.type);
  assert.ok(types.includes("pause.noop") && types.includes("resume.noop"));
});

test("cold: stop and destroy work on a paused sandbox and leave nothing frozen behind", async () => {
  const sb = await Sandbox.create();
  try {
    await sb.commands.start(["sleep", "1000"]);
    await sb.pause();
    await sb.stop();
    assert.equal((await sb.info()).state, "stopped");
    await assert.rejects(sb.resume(), ConflictError);
  } finally {
    await sb.destroy();
  }
  assert.equal(existsSync(`${STATE}/${sb.id}`), false);
  const sb2 = await Sandbox.create();
  const left = (() => {
    try {
      return remains(sb2.id);
    } catch (e) {
      sb2.destroy();
      throw e;
    }
  })();
  await sb2.commands.start(["sleep", "1000"]);
  await sb2.pause();
  await sb2.destroy();
  assert.ok(await waitFor(() => !left(), 5000), "a destroyed paused sandbox left something behind");
  await assert.rejects(sb2.resume(), NotFoundError);
});

test("cold: a SIGKILLed owner takes its paused sandbox with it (each freezer)", async () => {
  const [cmd, ...args] = runtimeCommand(`${FIX}scripts/paused-owner.ts`);
  // one owner per freezer, at once
  await Promise.all(FREEZERS.map(async (freezer) => {
    const c = await runtime().spawn(cmd, args, { stderr: "null", env: { MVM_FREEZER: freezer } });
    const id = await firstLine(c.stdout!);
    assert.match(id, /^sbx-/);
    const left = remains(id);
    assert.ok(existsSync(`${STATE}/${id}/paused`));
    if (freezer === "v1") assert.equal(readFileSync(`${v1Group(id)}/freezer.state`, "utf8").trim(), "FROZEN");
    c.kill("SIGKILL");
    await c.status;
    assert.ok(await waitFor(() => !left(), 8000), `something of the paused sandbox (${freezer} freezer) outlived its owner`);
    // its end is in the signed chain, though no client saw it: the next list() takes it in
    assert.deepEqual(await chainedEnd(id, () => Sandbox.list()), { events: ["started", "destroyed"], reason: "owner-exited" });
  }));
});

test("cold: the TTL ends a detached paused sandbox (each freezer)", async () => {
  const [cmd, ...args] = runtimeCommand(`${FIX}scripts/paused-owner.ts`);
  await Promise.all(FREEZERS.map(async (freezer) => {
    const c = await runtime().spawn(cmd, [...args, "--detach", "--ttl", "3"], { stderr: "piped", env: { MVM_FREEZER: freezer } });
    const id = (await collectText(c.stdout!)).trim();
    const err = await collectText(c.stderr!);
    assert.equal((await c.status).code, 0, err);
    assert.match(id, /^sbx-/);
    const left = remains(id);
    const sb = await Sandbox.connect(id);
    assert.equal((await sb.info()).state, "paused");
    await sb.disconnect();
    assert.ok(await waitFor(() => !left(), 10_000), `the paused sandbox (${freezer} freezer) outlived its TTL`);
    await assert.rejects(Sandbox.connect(id), NotFoundError);
    // verifyAudit() (as `mvm audit verify`) takes the TTL's end into the chain and verifies it
    let report: Awaited<ReturnType<typeof verifyAudit>> | undefined;
    const end = await chainedEnd(id, async () => report = await verifyAudit());
    assert.equal(report?.status, "VERIFIED", JSON.stringify(report?.firstBad));
    assert.deepEqual(end, { events: ["started", "destroyed"], reason: "ttl-expired" });
  }));
});

test("cold: stop ends every process and keeps the files, which stay readable and writable; start brings commands back", async () => {
  await using sb = await Sandbox.create();
  await sb.files.write("/app/kept.txt", "kept");
  await sb.commands.run(["sh", "-c", "echo tmp > /tmp/t"]);
  const p = await sb.commands.start(["sh", "-c", "(setsid sleep 1000 &) ; sleep 1000"]);
  const stopId = await sb.stop();
  assert.equal(sb.state, "stopped");
  assert.equal((await sb.info()).state, "stopped");
  // a process that stop() ended says so: its status is a TransportError naming the stop, never an exit
  await assert.rejects(p.status, (e: unknown) => e instanceof TransportError && /stopped/.test(e.message));
  assert.equal(await sb.files.readText("/app/kept.txt"), "kept");
  assert.deepEqual((await sb.files.list("/app")).map((f) => f.name).sort(), ["kept.txt"]);
  await sb.files.write("/app/while-stopped.txt", "w");
  await assert.rejects(sb.commands.run(["true"]), (e: unknown) => {
    assert.ok(e instanceof ConflictError, String(e));
    assert.match(e.message, /is stopped/);
    assert.match(e.message, /start\(\)/);
    assert.equal((e.details as { state: string }).state, "stopped");
    return true;
  });
  await assert.rejects(sb.pause(), ConflictError);
  await assert.rejects(sb.resume(), ConflictError);
  // another handle sees it stopped, stop again changes nothing
  {
    const other = await Sandbox.connect(sb.id);
    assert.equal((await other.info()).state, "stopped");
    assert.equal(await other.files.readText("/app/while-stopped.txt"), "w");
    await other.stop();
    await other.disconnect();
  }
  await sb.start();
  assert.equal(sb.state, "running");
  assert.equal((await sb.info()).state, "running");
  const r = await sb.commands.run(["sh", "-c", "cat /app/kept.txt /app/while-stopped.txt; ls /tmp; ps -eo args= | grep -c '[s]leep 1000'"]);
  assert.equal(r.stdout, "keptw0\n", "nothing of before the stop runs, /tmp starts empty");
  // stop and start again, a few times; events and audit entries show every transition
  for (let i = 0; i < 3; i++) {
    await sb.stop();
    await sb.start();
    assert.equal((await sb.commands.run(["echo", String(i)])).stdout, `${i}\n`);
  }
  const types = (await collect(sb.logs())).map((e: LogEvent) => e.type);
  assert.equal(types.filter((t) => t === "stopped").length, 4);
  assert.equal(types.filter((t) => t === "sandbox.started").length, 4);
  assert.equal(types.filter((t) => t === "jail.restarted").length, 4);
  const audited = await collect(sb.audit());
  assert.equal(audited.find((e) => e.id === stopId)?.event, "stopped");
  // the supervisor's transitions are in the chain too, under the ids logs() shows
  const restarts = audited.filter((e) => e.event === "jail.restarted");
  assert.equal(restarts.length, 4);
  assert.ok(restarts.every((e) => e.labels.source === "supervisor" && typeof e.data?.initPid === "number"));
  const logged = new Set((await collect(sb.logs())).map((e) => e.id));
  assert.ok(restarts.every((e) => logged.has(e.id)));
});

test("cold: a stopped sandbox goes at its TTL and with its owner", async () => {
  const [cmd, ...args] = runtimeCommand(`${FIX}scripts/paused-owner.ts`);
  const owned = await runtime().spawn(cmd, [...args, "--stop"], { stderr: "null" });
  const id = await firstLine(owned.stdout!);
  assert.match(id, /^sbx-/);
  const left = remains(id);
  assert.ok(existsSync(`${STATE}/${id}/stopped`));
  owned.kill("SIGKILL");
  await owned.status;
  assert.ok(await waitFor(() => !left(), 8000), "something of the stopped sandbox outlived its owner");

  const c = await runtime().spawn(cmd, [...args, "--stop", "--detach", "--ttl", "3"], { stderr: "piped" });
  const id2 = (await collectText(c.stdout!)).trim();
  const err = await collectText(c.stderr!);
  assert.equal((await c.status).code, 0, err);
  const left2 = remains(id2);
  const sb = await Sandbox.connect(id2);
  assert.equal((await sb.info()).state, "stopped");
  await sb.disconnect();
  assert.ok(await waitFor(() => !left2(), 10_000), "the stopped sandbox outlived its TTL");
});

test("cold: a networked sandbox gets its egress back after stop and start (its fresh jail has a fresh network namespace)", async (t) => {
  const policy = NetworkPolicy.denyByDefault().allowHttps("api.test").resolveTo("api.test", "10.213.255.2");
  let sb: Sandbox;
  try {
    sb = await Sandbox.create({ network: policy });
  } catch (e) {
    if (e instanceof UnsupportedError) return t.skip(`no egress on this host: ${e.message}`);
    throw e;
  }
  try {
    const egress = () => egressPids(sb.id);
    const resolve = async () => (await sb.commands.run(["getent", "hosts", "api.test"])).stdout;
    assert.match(await resolve(), /^198\.1[89]\./);
    const before = egress();
    await sb.stop();
    assert.ok(await waitFor(() => !before.some((p) => egress().includes(p)), 5000), "the old jail's proxy outlived it");
    await sb.start();
    assert.match(await resolve(), /^198\.1[89]\./, "no egress after start");
    assert.equal(egress().length > 0, true);
  } finally {
    await sb.destroy();
  }
});

test("cold: the memory checkpoint probe says why pause({ toDisk }) cannot be served, for a missing, old, failing and working CRIU", async () => {
  // stand-ins for the external tool, each printing what a CRIU of that kind prints
  const dir = mkdtempSync(`${tmpdir()}/mvm-criu-`);
  try {
    const tool = (name: string, version: string, check: string) => {
      writeFileSync(
        `${dir}/${name}`,
        `#!/bin/sh\ncase "$1" in --version) echo "Version: ${version}";; check) ${check};; *) exit 2;; esac\n`,
        { mode: 0o755 },
      );
      return [`${dir}/${name}`];
    };
    const missing = await probeCheckpointTool([`${dir}/none`]);
    assert.deepEqual({ ...missing, reason: undefined }, { tool: null, version: null, works: false, reason: undefined });
    assert.match(missing.reason, /not installed.*CRIU ≥ 4/);
    const old = await probeCheckpointTool(tool("old", "3.17.1", "echo Looks good."));
    assert.equal(old.version, "3.17.1");
    assert.match(old.reason, /CRIU 3\.17\.1; memory checkpoints need CRIU ≥ 4/);
    const failing = await probeCheckpointTool(
      tool("failing", "4.1", "echo 'Error (criu/vdso.c:1): vdso: Unexpected rt vDSO area bounds' >&2; exit 1"),
    );
    assert.equal(failing.works, false);
    assert.match(failing.reason, /fails its own check.*exit 1.*vDSO area bounds/);
    const working = await probeCheckpointTool(tool("working", "4.1", "echo Looks good."));
    assert.deepEqual({ works: working.works, version: working.version }, { works: true, version: "4.1" });
    assert.match(working.reason, /does not drive it yet/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
