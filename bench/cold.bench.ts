/**
 * Cold-mode benchmarks of the local engine: `pause()` and `resume()` latency for sandboxes whose
 * process holds 10 MB, 100 MB and 1 GB of memory, beside two baselines measured in the same run —
 * a raw cgroup v2 freeze/thaw of a group holding a host `sleep` (one `sh` per operation, the shape
 * the SDK uses, and the kernel's own cost inside one shell loop) — and an audit append.
 * Prints a Markdown table.
 *
 * Snapshots: `snapshot()`, `fork()` and restores (`Sandbox.create({ snapshot })`, verified and with
 * `verify: false`) of sandboxes whose `/app` holds one file of 10 MB, 100 MB and 1 GB, beside a raw
 * overlay mount (private mount namespace, the snapshot's tree as lower layer), a raw `cp -a` of the
 * sandbox's root and a raw `sha256sum` of the file, in the same run, and a plain `Sandbox.create()`.
 * `BENCH_SNAPSHOTS_ONLY=1` skips the pause and resume rows.
 *
 * Forks on copy-on-write storage: the bench makes a state root of its own on a loop-mounted XFS (reflink;
 * needs `mkfs.xfs`, package xfsprogs) and runs itself there (`BENCH_COW_CHILD=1`): `fork()` of sandboxes
 * holding 10 MB, 100 MB and 1 GB, with a warm spare and without the warm pool, beside a raw
 * `cp -a --reflink=always` of the parent's root and a raw freeze/thaw, in the same run; then unmounts,
 * detaches and removes the image. `BENCH_COW=0` skips it.
 *
 * Run: deno run -A bench/cold.bench.ts   |   bun bench/cold.bench.ts
 * Options (env): BENCH_QUICK=1 for fewer samples and no 1 GB sandbox. Needs root (cgroups).
 *
 * @example
 * ```sh
 * deno run -A bench/cold.bench.ts
 * ```
 * @module
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import process from "node:process";
import { Sandbox, Snapshot } from "../mod.ts";
import { AuditLog } from "../src/audit.ts";
import { detectCgroups } from "../src/engines/local/cgroups.ts";
import { runtime } from "../src/runtime/mod.ts";
import { collectText } from "../src/streams.ts";

const quick = process.env.BENCH_QUICK === "1";
const n = quick ? 10 : 30;
const rt = runtime();
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length - 1) * p))];
const fmt = (xs: number[]) => `p50 ${pct(xs, 0.5).toFixed(2)} ms, p95 ${pct(xs, 0.95).toFixed(2)} ms`;
const rows: string[][] = [];
if (process.env.BENCH_COW_CHILD === "1") {
  await cowChild();
  process.exit(0);
}

const layout = await detectCgroups();
if (!layout) throw new Error("cold.bench needs writable cgroups (run as root)");

// Baseline: a raw cgroup with a host sleep in it, frozen and thawed by writing cgroup.freeze and waiting
// for cgroup.events to say so — once per `sh` (as the SDK does it), and 200 times inside one shell (the
// kernel's cost without a spawn).
const cg = `${layout.v2}/mvm-bench-${process.pid}`;
const sh = (script: string, ...args: string[]) =>
  rt.spawn("/bin/sh", ["-c", script, "sh", ...args], { stdout: "piped", stderr: "null" }).then(async (c) => {
    const out = await collectText(c.stdout!);
    await c.status;
    return out.trim();
  });
// shell builtins only (as the SDK's helper): a grep per poll would measure grep's spawn
const FREEZE =
  'echo $2 > "$1/cgroup.freeze"; f=; until [ "$f" = $2 ]; do while read -r k v; do [ "$k" = frozen ] && f=$v; done < "$1/cgroup.events"; done';
const sleeper = await rt.spawn("sleep", ["600"], { stdout: "null", stderr: "null" });
try {
  await sh('mkdir "$1" && echo "$2" > "$1/cgroup.procs"', cg, String(sleeper.pid));
  const raw: { freeze: number[]; thaw: number[] } = { freeze: [], thaw: [] };
  for (let i = 0; i < n; i++) {
    for (const [k, v] of [["freeze", "1"], ["thaw", "0"]] as const) {
      const t = performance.now();
      await sh(FREEZE, cg, v);
      raw[k].push(performance.now() - t);
    }
  }
  const loop = Number(
    await sh(
      `s=$(date +%s%N); i=0; while [ $i -lt 200 ]; do ${FREEZE.replaceAll("$2", "1")}; ${
        FREEZE.replaceAll("$2", "0")
      }; i=$((i+1)); done; echo $(( ($(date +%s%N) - s) / 400 ))`,
      cg,
    ),
  ) / 1e6;
  rows.push(["raw cgroup freeze, one sh each", fmt(raw.freeze), "—"]);
  rows.push(["raw cgroup thaw, one sh each", fmt(raw.thaw), "—"]);
  rows.push(["raw freeze or thaw in one shell loop (kernel)", `mean ${loop.toFixed(3)} ms`, "—"]);
  const base = { freeze: pct(raw.freeze, 0.5), thaw: pct(raw.thaw, 0.5) };

  for (const mb of quick || process.env.BENCH_SNAPSHOTS_ONLY ? [] : [10, 100, 1024]) {
    await using sb = await Sandbox.create({ memoryMb: mb + 256 });
    const p = await sb.commands.start([
      "python3",
      "-c",
      `import sys, time\nb = bytearray(${mb} * 1024 * 1024)\nfor i in range(0, len(b), 4096): b[i] = 1\nprint("ready", flush=True)\nwhile True: time.sleep(0.01)`,
    ]);
    const reader = p.stdout.getReader();
    await reader.read();
    reader.releaseLock();
    const pause: number[] = [];
    const resume: number[] = [];
    for (let i = 0; i < n; i++) {
      let t = performance.now();
      await sb.pause();
      pause.push(performance.now() - t);
      t = performance.now();
      await sb.resume();
      resume.push(performance.now() - t);
    }
    rows.push([`pause(), process holding ${mb} MB`, fmt(pause), `${(pct(pause, 0.5) / base.freeze).toFixed(2)}× raw freeze`]);
    rows.push([`resume(), process holding ${mb} MB`, fmt(resume), `${(pct(resume, 0.5) / base.thaw).toFixed(2)}× raw thaw`]);
    await p.kill("SIGKILL");
  }
} finally {
  sleeper.kill("SIGKILL");
  await sleeper.status;
  await sh('i=0; until rmdir "$1" 2>/dev/null || [ $i -gt 100 ]; do i=$((i+1)); sleep 0.01; done', cg);
}

// Snapshots, forks and restores by size, beside a raw overlay mount, a raw cp -a and a raw sha256sum (same run).
{
  const base = (process.env.MVM_STATE_DIR || "/var/lib/mvm").replace(/\/+$/, "");
  const time = async (f: () => Promise<unknown>) => {
    const t = performance.now();
    await f();
    return performance.now() - t;
  };
  // a restore never takes a warm spare, so the plain create it stands beside does not either
  process.env.MVM_WARM_POOL = "0";
  const plain: number[] = [];
  for (let i = 0; i < 5; i++) {
    let sb!: Sandbox;
    plain.push(await time(async () => sb = await Sandbox.create()));
    await sb.destroy();
  }
  rows.push(["Sandbox.create(), no snapshot, no warm pool", fmt(plain), "—"]);
  const scratch = mkdtempSync(`${base}/bench-ovl-`);
  try {
    for (const mb of quick ? [10, 100] : [10, 100, 1024]) {
      const k = mb >= 1024 ? 3 : 5;
      await using sb = await Sandbox.create();
      await sb.commands.run(["sh", "-c", `head -c ${mb}M /dev/urandom > /app/big`], { check: true, timeoutSeconds: 300 });
      const m: Record<"snap" | "fork" | "verified" | "unverified" | "ovl" | "cp" | "sum", number[]> = {
        snap: [],
        fork: [],
        verified: [],
        unverified: [],
        ovl: [],
        cp: [],
        sum: [],
      };
      const root = `${base}/sandboxes/${sb.id}/root`;
      for (let i = 0; i < k; i++) {
        let snap!: Awaited<ReturnType<Sandbox["snapshot"]>>;
        await sh("sync"); // each figure starts with no dirty page of the one before (writeback would be charged to it)
        m.snap.push(await time(async () => snap = await sb.snapshot({ retention: 600 })));
        const tree = `${base}/snapshots/${snap.id}/tree`;
        let child!: Sandbox;
        await sh("sync");
        m.fork.push(await time(async () => child = await sb.fork()));
        await child.destroy();
        await Snapshot.delete(child.restoredFrom!.snapshotId);
        for (const [key, verify] of [["verified", true], ["unverified", false]] as const) {
          let r!: Sandbox;
          await sh("sync");
          m[key].push(await time(async () => r = await Sandbox.create({ snapshot: snap.id, verify })));
          await r.destroy();
        }
        m.ovl.push(
          await time(() =>
            sh(
              'mkdir -p "$2/u" "$2/w" "$2/m" && unshare --mount --propagation private sh -c \'mount -t overlay o -o "lowerdir=$1,upperdir=$2/u,workdir=$2/w" "$2/m" && ls "$2/m/app" >/dev/null\' sh "$1" "$2"; rm -rf "$2/u" "$2/w"',
              tree,
              scratch,
            )
          ),
        );
        await sh("sync");
        m.cp.push(await time(() => sh('cp -a "$1" "$2/copy"', root, scratch)));
        await sh('rm -rf "$1/copy"', scratch);
        m.sum.push(await time(() => sh('sha256sum "$1/app/big" >/dev/null', tree)));
        await Snapshot.delete(snap.id);
      }
      rows.push([`snapshot(), / holding ${mb} MB`, fmt(m.snap), `raw cp -a of the root ${fmt(m.cp)}; raw sha256sum ${fmt(m.sum)}`]);
      rows.push([`fork(), ${mb} MB (snapshot + restore, digests reused)`, fmt(m.fork), `raw overlay mount ${fmt(m.ovl)}`]);
      rows.push([`create({ snapshot }) verified, ${mb} MB (every file hashed)`, fmt(m.verified), `Sandbox.create() ${fmt(plain)}`]);
      rows.push([`create({ snapshot, verify: false }), ${mb} MB (overlay, no hash)`, fmt(m.unverified), `Sandbox.create() ${fmt(plain)}`]);
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

// Forks on a copy-on-write state root (a loop-mounted XFS), measured by this bench run again in a child with that root.
if (process.env.BENCH_COW !== "0") {
  const base = (process.env.MVM_STATE_DIR || "/var/lib/mvm").replace(/\/+$/, "");
  const img = `${base}-bench-cow.img`;
  const mnt = `${base}-bench-cow`;
  let dev = "";
  let mounted = false;
  try {
    dev = await sh(
      'truncate -s 4G "$1" && mkfs.xfs -q -m reflink=1 "$1" && mkdir -p "$2" && d=$(losetup --find --show "$1") && echo "$d" && mount -t xfs "$d" "$2"',
      img,
      mnt,
    );
    mounted = dev !== "";
    if (!mounted) throw new Error("could not make a loop-mounted XFS (needs root, xfsprogs, losetup)");
    const self = new URL(import.meta.url).pathname;
    const g = globalThis as { Deno?: unknown };
    const argv = g.Deno ? ["run", "-A", "--no-check", self] : [self];
    const c = await rt.spawn(process.execPath, argv, {
      env: { ...process.env, MVM_STATE_DIR: `${mnt}/state`, BENCH_COW_CHILD: "1" } as Record<string, string>,
      stdout: "piped",
      stderr: "inherit",
    });
    const out = await collectText(c.stdout!);
    await c.status;
    for (const l of out.split("\n")) if (l.startsWith("[")) rows.push(JSON.parse(l) as string[]);
  } catch (e) {
    rows.push(["fork on XFS (reflink)", `not measured: ${(e as Error).message}`, "—"]);
  } finally {
    // the child's warm spare is torn down by its supervisor once the child is gone, which needs the mount
    if (mounted) {
      await sh(
        'i=0; while ls -d "$1"/state/sandboxes/sbx-* >/dev/null 2>&1 && [ $i -lt 75 ]; do i=$((i+1)); sleep 0.2; done; ' +
          'i=0; until umount "$1" 2>/dev/null || [ $i -gt 50 ]; do i=$((i+1)); sleep 0.2; done; umount -l "$1" 2>/dev/null; true',
        mnt,
      );
    }
    if (dev) await sh('losetup -d "$1"', dev);
    await sh('rmdir "$1" 2>/dev/null; rm -f "$2"', mnt, img);
  }
}

/** The copy-on-write rows: runs in a child whose MVM_STATE_DIR is on the loop-mounted XFS; prints each row as a JSON line. */
async function cowChild(): Promise<void> {
  const r = runtime();
  const sh1 = (script: string, ...args: string[]) =>
    r.spawn("/bin/sh", ["-c", script, "sh", ...args], { stdout: "piped", stderr: "null" }).then(async (c) => {
      const out = await collectText(c.stdout!);
      await c.status;
      return out.trim();
    });
  const time = async (f: () => Promise<unknown>) => {
    const t = performance.now();
    await f();
    return performance.now() - t;
  };
  const emit = (row: string[]) => console.log(JSON.stringify(row));
  const base = process.env.MVM_STATE_DIR!.replace(/\/+$/, "");
  const k = quick ? 5 : 10;
  const scratch = `${base}/raw`;
  await sh1('mkdir -p "$1"', scratch);
  for (const mb of quick ? [10, 100] : [10, 100, 1024]) {
    // without the warm pool first (every fork starts its sandbox), then with a warm spare (the next fork's,
    // started in the background after each fork: the bench waits for it between samples, as an idle caller would)
    process.env.MVM_WARM_POOL = "0";
    await using sb = await Sandbox.create();
    await sb.commands.run(["sh", "-c", `head -c ${mb}M /dev/urandom > /app/big`], { check: true, timeoutSeconds: 300 });
    const root = `${base}/sandboxes/${sb.id}/root`;
    const cold: number[] = [];
    const warm: number[] = [];
    const raw: number[] = [];
    for (let i = 0; i < k; i++) {
      await sh1("sync");
      let child!: Sandbox;
      cold.push(await time(async () => child = await sb.fork()));
      if (child.forkedFrom?.method !== "clone") throw new Error(`a fork on XFS was not a clone: ${JSON.stringify(child.forkedFrom)}`);
      await child.destroy();
    }
    process.env.MVM_WARM_POOL = "1";
    await (await sb.fork()).destroy(); // starts the pool
    for (let i = 0; i < k; i++) {
      await sh1("sync; sleep 1.5");
      let child!: Sandbox;
      warm.push(await time(async () => child = await sb.fork()));
      await child.destroy();
    }
    for (let i = 0; i < k; i++) {
      await sh1("sync");
      raw.push(await time(() => sh1('mkdir "$2/c" && cp -a --reflink=always "$1/." "$2/c"', root, scratch)));
      await sh1('rm -rf "$1/c"', scratch);
    }
    emit([`fork() on XFS (reflink clone), ${mb} MB, warm spare`, fmt(warm), `raw sh + cp -a --reflink=always of the root ${fmt(raw)}`]);
    emit([`fork() on XFS (reflink clone), ${mb} MB, no warm pool`, fmt(cold), "the fork's own sandbox start is the difference"]);
  }
}

// An audit append (sign, lock, write, head), beside a bare appendFileSync of a line of the same size.
{
  const dir = mkdtempSync(`${tmpdir()}/mvm-bench-audit-`);
  try {
    const log = new AuditLog(`${dir}/audit`, "bench");
    log.append("warm");
    const xs: number[] = [];
    for (let i = 0; i < 500; i++) {
      const t = performance.now();
      log.append("bench.op", { i, path: "/app/x" }, { sandbox: "sbx-000000000000" });
      xs.push(performance.now() - t);
    }
    const { appendFileSync } = await import("node:fs");
    const line = "x".repeat(420) + "\n";
    const raw: number[] = [];
    for (let i = 0; i < 500; i++) {
      const t = performance.now();
      appendFileSync(`${dir}/raw`, line);
      raw.push(performance.now() - t);
    }
    rows.push(["audit append", fmt(xs), `raw appendFileSync ${fmt(raw)}`]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const g = globalThis as { Deno?: { version: { deno: string } }; Bun?: { version: string } };
console.log(`\n${g.Deno ? `Deno ${g.Deno.version.deno}` : g.Bun ? `Bun ${g.Bun.version}` : "Node"}, ${n} samples each\n`);
console.log("| measure | figure | baseline (same run) |\n| --- | --- | --- |");
for (const r of rows) console.log(`| ${r.join(" | ")} |`);
