/**
 * Folders between the host and a sandbox: `files.upload` and `files.download` of 100 files of 1 KiB
 * and of one 64 MiB file, beside the same run's raw path: a host `tar -c` piped into `files.writeTar`
 * (upload), `files.readTar` piped into a host `tar -x` (download) — what a caller who trusts the
 * sandbox's stream could do by hand. Prints a Markdown table (p50 of the samples).
 *
 * Run: deno run -A bench/transfer.bench.ts   |   bun bench/transfer.bench.ts   (BENCH_QUICK=1 for fewer samples)
 *
 * @example
 * ```sh
 * BENCH_QUICK=1 bun bench/transfer.bench.ts
 * ```
 * @module
 */
import process from "node:process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { Sandbox } from "../mod.ts";
import { runtime } from "../src/runtime/mod.ts";

const n = process.env.BENCH_QUICK === "1" ? 3 : 5;
const p50 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
const host = mkdtempSync(`${tmpdir()}/mvm-bench-transfer-`);

async function hostTar(args: string[], stdin?: ReadableStream<Uint8Array>): Promise<ReadableStream<Uint8Array> | null> {
  const c = await runtime().spawn("tar", args, { stdin: stdin ? "piped" : "null", stdout: stdin ? "null" : "piped" });
  if (stdin) {
    await stdin.pipeTo(c.stdin!);
    await c.status;
    return null;
  }
  return c.stdout!;
}

try {
  await using sb = await Sandbox.create();
  const sets = {
    "100 × 1 KiB": () => {
      mkdirSync(`${host}/small`);
      for (let i = 0; i < 100; i++) writeFileSync(`${host}/small/f${i}`, new Uint8Array(1024).fill(i));
      return "small";
    },
    "1 × 64 MiB": () => {
      mkdirSync(`${host}/big`);
      writeFileSync(`${host}/big/f`, new Uint8Array(64 << 20).fill(7));
      return "big";
    },
  };
  const rows: string[] = [];
  for (const [label, make] of Object.entries(sets)) {
    const dir = make();
    const t: Record<string, number[]> = { up: [], rawUp: [], down: [], rawDown: [] };
    for (let i = 0; i < n; i++) {
      let s = performance.now();
      await sb.files.upload(`${host}/${dir}`, `/app/${dir}-${i}`);
      t.up!.push(performance.now() - s);
      s = performance.now();
      await sb.files.writeTar(`/app/${dir}-raw-${i}`, (await hostTar(["-c", "-f", "-", "-C", `${host}/${dir}`, "."]))!);
      t.rawUp!.push(performance.now() - s);
      s = performance.now();
      await sb.files.download(`/app/${dir}-${i}`, `${host}/out-${dir}-${i}`);
      t.down!.push(performance.now() - s);
      mkdirSync(`${host}/raw-${dir}-${i}`);
      s = performance.now();
      await hostTar(["-x", "-f", "-", "-C", `${host}/raw-${dir}-${i}`], await sb.files.readTar(`/app/${dir}-${i}`));
      t.rawDown!.push(performance.now() - s);
    }
    const f = (k: string) => `${p50(t[k]!).toFixed(0)} ms`;
    rows.push(`| ${label} | ${f("up")} | ${f("rawUp")} | ${f("down")} | ${f("rawDown")} |`);
  }
  console.log(
    `| ${
      process.versions.bun ? "Bun" : "Deno"
    }, p50 of ${n} | upload | host \`tar -c\` → \`writeTar\` | download | \`readTar\` → host \`tar -x\` |`,
  );
  console.log("| --- | --- | --- | --- | --- |");
  for (const r of rows) console.log(r);
} finally {
  rmSync(host, { recursive: true, force: true });
}
