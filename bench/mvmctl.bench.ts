/**
 * The mvmctl path's overhead per operation, beside the local engine in the same run: create → first
 * command, a command round trip, and a 100 MB file in and out, once through `engine: "mvmctl"` with
 * MVM_CLI_BIN pointing at our CLI (which speaks upstream's machine verbs over the local engine, in
 * the runtime running this bench) and once through the local engine directly. The difference is
 * what the CLI calls cost (a process per verb, the keeper of each command, the spool). Prints a
 * Markdown table.
 *
 * Run: deno run -A bench/mvmctl.bench.ts   |   bun bench/mvmctl.bench.ts
 * Options (env): BENCH_QUICK=1 for fewer samples.
 *
 * @example
 * ```sh
 * BENCH_QUICK=1 bun bench/mvmctl.bench.ts
 * ```
 * @module
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import process from "node:process";
import { type EngineName, Sandbox } from "../mod.ts";
import { runtime } from "../src/runtime/mod.ts";

const quick = process.env.BENCH_QUICK === "1";
const N = quick ? 5 : 15;
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length - 1) * p))]!;
const ms = (x: number) => `${x.toFixed(0)} ms`;

// our CLI as the mvmctl binary, run by this runtime
const cli = new URL("../src/cli.ts", import.meta.url).pathname;
const dir = mkdtempSync(`${tmpdir()}/mvm-bench-`);
const argv = (globalThis as { Deno?: unknown }).Deno ? [process.execPath, "run", "-A", "--no-check", cli] : [process.execPath, cli];
writeFileSync(`${dir}/mvmctl`, `#!/bin/sh\nexec ${argv.map((a) => `'${a}'`).join(" ")} "$@"\n`);
chmodSync(`${dir}/mvmctl`, 0o755);
process.env.MVM_CLI_BIN = `${dir}/mvmctl`;

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

async function measure(engine: EngineName): Promise<Record<string, number>> {
  const create: number[] = [];
  for (let i = 0; i < (quick ? 3 : 5); i++) {
    let sb: Sandbox | undefined;
    create.push(
      await time(async () => {
        sb = await Sandbox.create({ engine, ttl: "5m" });
        await sb.commands.run(["true"]);
      }),
    );
    await sb!.destroy();
  }
  await using sb = await Sandbox.create({ engine, ttl: "10m" });
  await sb.commands.run(["true"]);
  const rtt: number[] = [];
  for (let i = 0; i < N; i++) rtt.push(await time(() => sb.commands.run(["true"])));
  const data = new Uint8Array(100 * 1024 * 1024).fill(120);
  const write = await time(() => sb.files.write("/app/big", data));
  let got = 0;
  const read = await time(async () => {
    for await (const c of await sb.files.readStream("/app/big")) got += c.length;
  });
  if (got !== data.length) throw new Error(`read ${got} of ${data.length} bytes`);
  return { create: pct(create, 0.5), rtt: pct(rtt, 0.5), write: 100 / (write / 1000), read: 100 / (read / 1000) };
}

try {
  const local = await measure("local");
  const live = await measure("mvmctl");
  const rows = [
    ["create → first command (p50)", ms(live.create!), ms(local.create!), `+${ms(live.create! - local.create!)}`],
    ["command round trip (p50)", ms(live.rtt!), ms(local.rtt!), `+${ms(live.rtt! - local.rtt!)}`],
    [
      "files.write 100 MB",
      `${live.write!.toFixed(0)} MB/s`,
      `${local.write!.toFixed(0)} MB/s`,
      `${(live.write! / local.write!).toFixed(2)}×`,
    ],
    [
      "files.readStream 100 MB",
      `${live.read!.toFixed(0)} MB/s`,
      `${local.read!.toFixed(0)} MB/s`,
      `${(live.read! / local.read!).toFixed(2)}×`,
    ],
  ];
  console.log(`\nmvmctl path (our CLI on ${runtime().name}) vs local engine, same run${quick ? " (BENCH_QUICK)" : ""}\n`);
  console.log("| operation | mvmctl path | local engine | difference |\n| --- | --- | --- | --- |");
  for (const r of rows) console.log(`| ${r.join(" | ")} |`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
