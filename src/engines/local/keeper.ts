/**
 * The keeper of a detached command: a host-side process of its own (started by `detached.ts` in a
 * session of its own, so it outlives the process that asked for the command) that runs the command
 * in the sandbox through the local engine and writes its output, status, and nothing else into the
 * command's spool. It reads its job (argv, env, cwd) as JSON on stdin, so nothing of it shows in
 * the host's process list. It takes signal requests and stdin chunks from the spool, and stops
 * when the command ends or the sandbox goes.
 *
 * Run only as a program: `deno run --allow-run --allow-read --allow-write --allow-env keeper.ts`,
 * `bun keeper.ts` or `node keeper.js`.
 *
 * @example
 * ```ts
 * // spawned by detached.ts; see startDetached()
 * ```
 * @module
 */
import process from "node:process";
import { SandboxError } from "../../errors.ts";
import type { EngineProcess } from "../contract.ts";
import { localEngine } from "./mod.ts";
import type { LocalSandbox } from "./sandbox.ts";
import { SegmentWriter, Spool } from "./spool.ts";

/** The job a keeper reads on stdin. */
export interface KeeperJob {
  sandboxId: string;
  cmdId: string;
  argv: string[];
  env: Record<string, string>;
  cwd?: string;
  timeoutSeconds?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function readJob(): Promise<KeeperJob> {
  let text = "";
  for await (const c of process.stdin) text += typeof c === "string" ? c : new TextDecoder().decode(c);
  return JSON.parse(text) as KeeperJob;
}

function errorOf(e: unknown): { code: string; message: string } {
  return { code: e instanceof SandboxError ? e.code : "INTERNAL", message: e instanceof Error ? e.message : String(e) };
}

async function keep(): Promise<void> {
  const job = await readJob();
  const sb = await localEngine.connect(job.sandboxId) as LocalSandbox;
  const spool = new Spool(`${sb.dir.path}/procs/${job.cmdId}`);
  const stopping = () => !sb.dir.exists() || sb.dir.has("destroying") || !spool.exists();
  let p: EngineProcess;
  try {
    p = await sb.start(job.argv, { env: job.env, cwd: job.cwd, timeoutSeconds: job.timeoutSeconds });
  } catch (e) {
    spool.writeStatus({ error: errorOf(e) });
    return;
  }
  spool.markStarted();
  let done = false;
  // signals: asked for through the spool, applied to the command's whole tree
  const signals = (async () => {
    while (!done) {
      for (const s of spool.takeSignals()) await p.kill(s).catch(() => {});
      if (stopping()) await p.kill("SIGKILL").catch(() => {});
      await sleep(20);
    }
  })();
  // stdin: chunks from the spool, in order, then its end
  const stdin = (async () => {
    const w = p.stdin.getWriter();
    for (let seq = 0; !done;) {
      const c = spool.takeStdin(seq);
      if (c === null) {
        await sleep(10);
        continue;
      }
      if (c === "end") return void await w.close().catch(() => {});
      seq++;
      try {
        await w.write(c);
      } catch {
        return; // the command closed its stdin or ended
      }
    }
  })();
  const pump = async (s: ReadableStream<Uint8Array>, w: SegmentWriter) => {
    for await (const chunk of s) await w.write(chunk);
  };
  try {
    const [status] = await Promise.all([
      p.status,
      pump(p.stdout, new SegmentWriter(spool, "out", stopping)),
      pump(p.stderr, new SegmentWriter(spool, "err", stopping)),
    ]);
    if (spool.exists()) spool.writeStatus({ status });
  } catch (e) {
    await p.kill("SIGKILL").catch(() => {});
    if (spool.exists()) spool.writeStatus({ error: errorOf(e) });
  }
  done = true;
  await Promise.race([Promise.all([signals, stdin]), sleep(100)]);
}

await keep().catch(() => {});
process.exit(0);
