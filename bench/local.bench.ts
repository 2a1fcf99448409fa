/**
 * Benchmarks of the local engine, each beside a baseline measured in the same
 * run: raw spawn of /bin/true (the runtime's own cost), raw `bwrap … true`
 * (isolation's floor) and `cat` of the same file on the host (I/O's floor).
 * Prints a Markdown table; figures in the README come from this.
 *
 * Run: deno run -A bench/local.bench.ts   |   bun bench/local.bench.ts
 * Options (env): BENCH_QUICK=1 for fewer samples and no 1 GB file.
 *
 * @example
 * ```sh
 * deno task bench
 * ```
 * @module
 */
import { readdirSync, readFileSync, rmSync } from "node:fs";
import process from "node:process";
import { Sandbox } from "../mod.ts";
import { RAW_BWRAP } from "./baseline.ts";
import { runtime } from "../src/runtime/mod.ts";

const quick = process.env.BENCH_QUICK === "1";
const rt = runtime();
const rows: string[][] = [];
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length - 1) * p))];
const ms = (x: number) => `${x.toFixed(1)} ms`;

async function spawnTrue(cmd: string, args: string[]): Promise<number> {
  const t = performance.now();
  const c = await rt.spawn(cmd, args, { stdout: "null", stderr: "null" });
  const s = await c.status;
  if (s.code !== 0) throw new Error(`${cmd} failed: ${JSON.stringify(s)}`);
  return performance.now() - t;
}
async function sample(n: number, fn: () => Promise<number>): Promise<number[]> {
  await fn();
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(await fn());
  return out;
}

const rawSpawn = await sample(quick ? 20 : 50, () => spawnTrue("/bin/true", []));
const rawBwrap = await sample(quick ? 10 : 30, () => spawnTrue("bwrap", [...RAW_BWRAP]));

const createFirst = await sample(quick ? 8 : 20, async () => {
  const t = performance.now();
  const sb = await Sandbox.create();
  await sb.commands.run(["true"]);
  const d = performance.now() - t;
  await sb.destroy();
  return d;
});

// The first create of a process has no warm pool to claim from: measured in fresh processes
const self = (globalThis as { Deno?: unknown }).Deno ? [process.execPath, "run", "-A", "--no-check"] : [process.execPath];
const firstCreate = await sample(quick ? 4 : 10, async () => {
  const c = await rt.spawn(self[0]!, [...self.slice(1), new URL("./first-create.ts", import.meta.url).pathname], { stderr: "null" });
  const out = new TextDecoder().decode(await new Response(c.stdout).arrayBuffer());
  await c.status;
  return Number(out.trim());
});

// Round trip two ways: back to back (no time to spawn the next runner ahead), and with 20 ms between
// commands, as an agent's tool calls come (a warm runner waits). The baseline is measured the same way.
const gap = () => new Promise((r) => setTimeout(r, 20));
const rt1 = await (async () => {
  await using sb = await Sandbox.create();
  return await sample(quick ? 20 : 50, async () => {
    const t = performance.now();
    await sb.commands.run(["true"]);
    return performance.now() - t;
  });
})();
const rawGap = await sample(quick ? 20 : 50, async () => (await gap(), await spawnTrue("/bin/true", [])));
const rtGap = await (async () => {
  await using sb = await Sandbox.create();
  return await sample(quick ? 20 : 50, async () => {
    await gap();
    const t = performance.now();
    await sb.commands.run(["true"]);
    return performance.now() - t;
  });
})();

rows.push([
  "create → first command (a process that created before: warm pool)",
  `p50 ${ms(pct(createFirst, 0.5))}, p95 ${ms(pct(createFirst, 0.95))}`,
  `raw bwrap true p50 ${ms(pct(rawBwrap, 0.5))}`,
  `${(pct(createFirst, 0.5) / pct(rawBwrap, 0.5)).toFixed(1)}×`,
]);
rows.push([
  "create → first command, first in a fresh process",
  `p50 ${ms(pct(firstCreate, 0.5))}, p95 ${ms(pct(firstCreate, 0.95))}`,
  `raw bwrap true p50 ${ms(pct(rawBwrap, 0.5))}`,
  `${(pct(firstCreate, 0.5) / pct(rawBwrap, 0.5)).toFixed(1)}×`,
]);
rows.push([
  "command round trip, 20 ms apart",
  `p50 ${ms(pct(rtGap, 0.5))}`,
  `raw spawn true p50 ${ms(pct(rawGap, 0.5))}`,
  `+${ms(pct(rtGap, 0.5) - pct(rawGap, 0.5))}`,
]);
rows.push([
  "command round trip, back to back",
  `p50 ${ms(pct(rt1, 0.5))}`,
  `raw spawn true p50 ${ms(pct(rawSpawn, 0.5))}`,
  `+${ms(pct(rt1, 0.5) - pct(rawSpawn, 0.5))}`,
]);

// memory: drop of MemAvailable with 20 idle sandboxes, divided by 20
const memAvail = () => Number(/MemAvailable:\s+(\d+)/.exec(readFileSync("/proc/meminfo", "utf8"))![1]) * 1024;
{
  const settle = () => new Promise((r) => setTimeout(r, 500));
  await settle();
  const before = memAvail();
  const sbs = await Promise.all(Array.from({ length: 20 }, () => Sandbox.create()));
  await Promise.all(sbs.map((sb) => sb.commands.run(["true"])));
  await settle();
  const after = memAvail();
  // cross-check: proportional set size of every host process that belongs to these sandboxes
  // (supervisor, its sleeps, bubblewrap, the sandbox's init), found by the state folder in their argv
  // or their cgroup
  const ids = sbs.map((sb) => sb.id);
  let pss = 0;
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, "utf8");
      const cg = readFileSync(`/proc/${d}/cgroup`, "utf8");
      if (!ids.some((id) => cmd.includes(id) || cg.includes(`/mvm/${id}`))) continue;
      pss += Number(/^Pss:\s+(\d+)/m.exec(readFileSync(`/proc/${d}/smaps_rollup`, "utf8"))?.[1] ?? 0) * 1024;
    } catch { /* gone */ }
  }
  await Promise.all(sbs.map((sb) => sb.destroy()));
  rows.push([
    "host memory per idle sandbox",
    `${((before - after) / 20 / 1048576).toFixed(1)} MB (MemAvailable drop / 20)`,
    `PSS of its host processes: ${(pss / 20 / 1048576).toFixed(2)} MB`,
    "target < 60 MB",
  ]);
}

// file throughput: files.write / files.readStream vs `cat` on the host, same bytes
async function drain(s: ReadableStream<Uint8Array>): Promise<number> {
  let n = 0;
  for await (const c of s) n += c.length;
  return n;
}
function gen(size: number): ReadableStream<Uint8Array> {
  const chunk = new Uint8Array(1 << 20).map((_, i) => i & 0xff);
  let left = size;
  return new ReadableStream({
    pull(c) {
      if (left <= 0) return c.close();
      const n = Math.min(left, chunk.length);
      c.enqueue(n === chunk.length ? chunk : chunk.subarray(0, n));
      left -= n;
    },
  }, { highWaterMark: 0 });
}
const mbps = (bytes: number, t: number) => bytes / 1048576 / (t / 1000);
{
  await using sb = await Sandbox.create();
  const sizes = quick ? [1 << 20, 100 << 20] : [1 << 20, 100 << 20, 1 << 30];
  const host = `/tmp/mvm-bench-${process.pid}`;
  try {
    // medians over several rounds (1 MB transfers are dominated by fixed costs and noise)
    const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
    const sync = async () => void await (await rt.spawn("sync", [], { stdout: "null", stderr: "null" })).status;
    for (const size of sizes) {
      const label = size >= 1 << 30 ? "1 GB" : size >= 100 << 20 ? "100 MB" : "1 MB";
      // three rounds even of 1 GB: one round on a loaded machine gave figures no later run reproduced
      const rounds = size >= 100 << 20 ? 3 : 11;
      const hostW: number[] = [], ourW: number[] = [], hostR: number[] = [], ourR: number[] = [];
      for (let i = 0; i < rounds; i++) {
        // each timed write starts with no dirty pages from the previous one (writeback would slow it)
        await sync();
        let t = performance.now();
        const c = await rt.spawn("sh", ["-c", `cat > ${host}`], { stdin: "piped", stdout: "null", stderr: "null" });
        await gen(size).pipeTo(c.stdin!);
        await c.status;
        hostW.push(performance.now() - t);
        await sync();
        await new Promise((r) => setTimeout(r, 20));
        t = performance.now();
        await sb.files.write("/app/bench.bin", gen(size));
        ourW.push(performance.now() - t);
        t = performance.now();
        const r = await rt.spawn("cat", [host], { stderr: "null" });
        await drain(r.stdout!);
        hostR.push(performance.now() - t);
        await new Promise((r) => setTimeout(r, 20));
        t = performance.now();
        const n = await drain(await sb.files.readStream("/app/bench.bin"));
        ourR.push(performance.now() - t);
        if (n !== size) throw new Error(`read ${n} of ${size}`);
      }
      const [hw, ow, hr, or] = [med(hostW), med(ourW), med(hostR), med(ourR)];
      rows.push([
        `files.write ${label}`,
        `${mbps(size, ow).toFixed(0)} MB/s`,
        `host cat > file ${mbps(size, hw).toFixed(0)} MB/s`,
        `${(hw / ow).toFixed(2)}×`,
      ]);
      rows.push([
        `files.readStream ${label}`,
        `${mbps(size, or).toFixed(0)} MB/s`,
        `host cat file ${mbps(size, hr).toFixed(0)} MB/s`,
        `${(hr / or).toFixed(2)}×`,
      ]);
    }
  } finally {
    rmSync(host, { force: true });
  }
}

const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
console.log(`\nlocal engine on ${rt.name}, ${new Date().toISOString().slice(0, 10)}, load average at the end ${load}\n`);
console.log("| measure | figure | baseline (same run) | ratio |\n|---|---|---|---|");
for (const r of rows) console.log(`| ${r.join(" | ")} |`);
