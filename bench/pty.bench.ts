/**
 * What a terminal costs: a command on a PTY (`commands.run(argv, { pty: true })`) beside the same
 * command on pipes, in the same sandbox and the same run — the round trip of `true`, and the
 * throughput of `seq` (the PTY's line discipline turns each `\n` into `\r\n`, so its output is
 * larger; MB/s counts the bytes that arrived). Prints a Markdown table.
 *
 * Run: deno run -A bench/pty.bench.ts   |   bun bench/pty.bench.ts   (BENCH_QUICK=1 for fewer samples)
 *
 * @example
 * ```sh
 * BENCH_QUICK=1 bun bench/pty.bench.ts
 * ```
 * @module
 */
import process from "node:process";
import { Sandbox } from "../mod.ts";

const quick = process.env.BENCH_QUICK === "1";
const n = quick ? 10 : 30;
const lines = quick ? 500_000 : 2_000_000;
const p50 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;

await using sb = await Sandbox.create();
await sb.commands.run(["true"]);
const trip: Record<"pipes" | "pty", number[]> = { pipes: [], pty: [] };
for (let i = 0; i < n; i++) {
  for (const k of ["pipes", "pty"] as const) {
    const t = performance.now();
    await sb.commands.run(["true"], { pty: k === "pty" });
    trip[k].push(performance.now() - t);
  }
}
const rate: Record<"pipes" | "pty", number> = { pipes: 0, pty: 0 };
for (const k of ["pipes", "pty"] as const) {
  const t = performance.now();
  const r = await sb.commands.run(["seq", String(lines)], { pty: k === "pty" });
  rate[k] = r.stdout.length / 1e6 / ((performance.now() - t) / 1000);
}
console.log(`| measure (${process.versions.bun ? "Bun" : "Deno"}, ${n} samples) | PTY | pipes (same run) | ratio |`);
console.log("| --- | --- | --- | --- |");
console.log(
  `| run(["true"]) round trip | p50 ${p50(trip.pty).toFixed(1)} ms | p50 ${p50(trip.pipes).toFixed(1)} ms | +${
    (p50(trip.pty) - p50(trip.pipes)).toFixed(1)
  } ms |`,
);
console.log(
  `| seq ${lines} output | ${rate.pty.toFixed(1)} MB/s | ${rate.pipes.toFixed(1)} MB/s | ${(rate.pty / rate.pipes).toFixed(2)}× |`,
);
