/**
 * Scale: N sandboxes created in waves, all alive at once. Reports the time per create at the start
 * and at the end of the run (a cost that grows with the count shows here), failures, host memory
 * per sandbox (the drop of MemAvailable / N), the CPU all N idle sandboxes use over 10 s (every
 * process this benchmark started — supervisors, watches, sandboxes, runners — from /proc), and one command
 * in each. Baseline in the same run: a raw `bwrap … true`.
 *
 * Run: deno run -A bench/scale.bench.ts   |   bun bench/scale.bench.ts
 * Options (env): SCALE_N="100 500 1000" (the sizes), SCALE_WAVE=50 (creates in flight at once).
 *
 * @example
 * ```sh
 * SCALE_N=100 bun bench/scale.bench.ts
 * ```
 * @module
 */
import { readdirSync, readFileSync } from "node:fs";
import process from "node:process";
import { Sandbox } from "../mod.ts";
import { RAW_BWRAP } from "./baseline.ts";
import { runtime } from "../src/runtime/mod.ts";

const sizes = (process.env.SCALE_N ?? "100 500 1000").split(/[ ,]+/).filter(Boolean).map(Number);
const WAVE = Number(process.env.SCALE_WAVE ?? 50);
const TICK = 100; // USER_HZ
const ms = (x: number) => `${x.toFixed(1)} ms`;

function memAvailableKb(): number {
  const m = /MemAvailable:\s+(\d+)/.exec(readFileSync("/proc/meminfo", "utf8"));
  return Number(m![1]);
}

/** This process and every descendant: pid → parent, from /proc. */
function descendants(root: number): number[] {
  const kids = new Map<number, number[]>();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = readFileSync(`/proc/${d}/stat`, "utf8");
      const ppid = Number(s.slice(s.lastIndexOf(")") + 2).split(" ")[1]);
      (kids.get(ppid) ?? kids.set(ppid, []).get(ppid)!).push(Number(d));
    } catch { /* gone */ }
  }
  const out: number[] = [];
  const todo = [root];
  while (todo.length) {
    const p = todo.pop()!;
    out.push(p);
    todo.push(...(kids.get(p) ?? []));
  }
  return out;
}
function cpuTicks(pids: number[]): number {
  let sum = 0;
  for (const p of pids) {
    try {
      const s = readFileSync(`/proc/${p}/stat`, "utf8");
      const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
      sum += Number(f[11]) + Number(f[12]);
    } catch { /* gone */ }
  }
  return sum;
}
function machineTicks(): number {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  return f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!; // user nice system irq softirq steal
}

async function rawBwrap(): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < 11; i++) {
    const t = performance.now();
    await (await runtime().spawn("bwrap", [...RAW_BWRAP], { stdout: "null", stderr: "null" })).status;
    xs.push(performance.now() - t);
  }
  return xs.sort((a, b) => a - b)[5]!;
}

const rows: string[][] = [];
const bw = await rawBwrap();
// one create first, so the module, the helpers and the warm pool are in place
await (await Sandbox.create()).destroy();
for (const n of sizes) {
  await new Promise((r) => setTimeout(r, 2000));
  const mem0 = memAvailableKb();
  const made: Sandbox[] = [];
  let failures = 0;
  const waves: number[] = [];
  const t0 = performance.now();
  while (made.length + failures < n) {
    const k = Math.min(WAVE, n - made.length - failures);
    const w0 = performance.now();
    const got = await Promise.allSettled(Array.from({ length: k }, () => Sandbox.create({ tags: { bench: "scale" } })));
    waves.push((performance.now() - w0) / k);
    for (const g of got) g.status === "fulfilled" ? made.push(g.value) : failures++;
  }
  const createS = (performance.now() - t0) / 1000;
  await new Promise((r) => setTimeout(r, 3000));
  const memPer = (mem0 - memAvailableKb()) / 1024 / n;
  // everything this benchmark started (supervisors, their watches, sandboxes, runners), not itself
  const pids = descendants(process.pid).filter((p) => p !== process.pid);
  const c0 = cpuTicks(pids), m0 = machineTicks();
  await new Promise((r) => setTimeout(r, 10_000));
  const idleOurs = (cpuTicks(pids) - c0) / TICK / 10 * 100;
  const idleMachine = (machineTicks() - m0) / TICK / 10 * 100;
  const e0 = performance.now();
  let cmdFail = 0;
  for (let i = 0; i < made.length; i += WAVE) {
    const got = await Promise.allSettled(made.slice(i, i + WAVE).map((sb) => sb.commands.run(["true"])));
    cmdFail += got.filter((g) => g.status === "rejected" || g.value.exitCode !== 0).length;
  }
  const execS = (performance.now() - e0) / 1000;
  const d0 = performance.now();
  await Promise.allSettled(made.map((sb) => sb.destroy()));
  const destroyS = (performance.now() - d0) / 1000;
  rows.push([
    String(n),
    `${createS.toFixed(1)} s`,
    ms(waves[0]!),
    ms(waves[waves.length - 1]!),
    String(failures + cmdFail),
    `${memPer.toFixed(2)} MB`,
    `${idleOurs.toFixed(2)}% (machine ${idleMachine.toFixed(0)}%)`,
    `${execS.toFixed(1)} s`,
    `${destroyS.toFixed(1)} s`,
  ]);
  console.error(`N=${n} done`);
}

const name = (globalThis as { Deno?: unknown }).Deno ? "deno" : "bun";
console.log(`\n${name}, waves of ${WAVE}, raw bwrap … true ${ms(bw)} (p50)\n`);
const head = [
  "N",
  "create all",
  "per create (first wave)",
  "per create (last wave)",
  "failures",
  "host memory / sandbox",
  "idle CPU over 10 s (of one core)",
  "one command in each",
  "destroy all",
];
console.log(`| ${head.join(" | ")} |\n|${head.map(() => "---").join("|")}|`);
for (const r of rows) console.log(`| ${r.join(" | ")} |`);
