/**
 * The seed's first example, for real, on the embedded default (local) engine:
 * a bubblewrap sandbox runs a Python file written into it. It asks for the
 * `python-3.12` template and falls back to the host image when this host
 * has another Python (the error lists what is available).
 *
 * Run: deno run --allow-run --allow-read --allow-write --allow-env examples/hello.ts
 *  or: bun examples/hello.ts
 *
 * @example
 * ```sh
 * deno task demo
 * ```
 * @module
 */
import { lines, NotFoundError, Sandbox } from "../mod.ts";

async function create(): Promise<Sandbox> {
  try {
    return await Sandbox.create("python-3.12", { workloadId: "agent-tool" });
  } catch (e) {
    if (!(e instanceof NotFoundError) || !e.details.available) throw e;
    console.error(`(${e.message}; using the host image)`);
    return await Sandbox.create({ workloadId: "agent-tool" });
  }
}

await using sandbox = await create();
await sandbox.files.write("/app/main.py", "import os, socket\nprint('hello from mvm', 'uid', os.getuid(), 'host', socket.gethostname())\n");
const p = await sandbox.commands.start(["python3", "/app/main.py"]);
for await (const line of p.stdout.pipeThrough(lines())) console.log(line);
const status = await p.status;
console.log(`sandbox ${sandbox.id} (${sandbox.engine}): exit ${status.exitCode} in ${status.durationMs} ms, audit ${status.auditId}`);
