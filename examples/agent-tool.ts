/**
 * What an agent runner does with a sandbox: run generated code with limits and
 * a timeout, stream its output line by line as it comes, feed it stdin, get a
 * project folder out as one tar stream, and read the sandbox's event log.
 *
 * Run: deno run --allow-run --allow-read --allow-write --allow-env examples/agent-tool.ts
 *  or: bun examples/agent-tool.ts
 *
 * @example
 * ```sh
 * bun examples/agent-tool.ts
 * ```
 * @module
 */
import process from "node:process";
import { lines, Sandbox } from "../mod.ts";

const generated = `
import sys, time
for i, line in enumerate(sys.stdin):
    print(f"step {i}: {line.strip().upper()}", flush=True)
    time.sleep(0.05)
open("/app/out/result.txt", "w").write("done\\n")
`;

// limits need root (or a delegated cgroup): asked for without them they are refused, never ignored; without
// them the sandbox is still isolated, just not capped
const limits = process.getuid?.() === 0 ? { memoryMb: 256, pidsLimit: 64 } : {};
await using sb = await Sandbox.create({ ...limits, ttl: "5m", tags: { example: "agent-tool" } });
await sb.files.write("/app/tool.py", generated);
await sb.files.mkdir("/app/out");

// a streaming run: stdin in, lines out as they are printed
await using p = await sb.commands.start(["python3", "/app/tool.py"], { timeoutSeconds: 10 });
const w = p.stdin.getWriter();
for (const word of ["fetch", "parse", "answer"]) await w.write(new TextEncoder().encode(word + "\n"));
await w.close();
for await (const line of p.stdout.pipeThrough(lines())) console.log(`  guest> ${line}`);
const status = await p.status;
console.log(`exit ${status.exitCode} in ${status.durationMs} ms (audit ${status.auditId})`);

// a runaway: the timeout kills the whole tree and says so
const runaway = await sb.commands.run(["sh", "-c", "sleep 100 & sleep 100"], { timeoutSeconds: 1 });
console.log(`runaway: timedOut=${runaway.timedOut} signal=${runaway.signal}`);

// the results folder as one tar stream
const tar = await sb.files.readTar("/app/out");
let bytes = 0;
for await (const c of tar) bytes += c.length;
console.log(`/app/out as tar: ${bytes} bytes; result.txt says ${JSON.stringify(await sb.files.readText("/app/out/result.txt"))}`);

for await (const ev of sb.logs()) console.log(`  log ${ev.seq} ${ev.type}`);
