// The API's semantics, messages and conveniences (issue 10) against real sandboxes: exit codes of
// signal deaths, timeouts under check, status that no unread stream holds up, files conveniences,
// names, typed messages. Every sandbox is created with `await using`, so a failing test leaves
// nothing behind.
import { availableParallelism } from "node:os";
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CommandExitError,
  CommandTimeoutError,
  ConflictError,
  type FileData,
  InvalidInputError,
  NotADirectoryError,
  NotFoundError,
  PermissionDeniedError,
  Sandbox,
  TimeoutError,
} from "../mod.ts";
import { lines } from "../mod.ts";
import { runtime } from "../src/runtime/mod.ts";
import { signalExitCode } from "../src/signals.ts";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { rootTag } from "../src/engines/local/state.ts";
import { collect, runtimeCommand, STATE, waitFor } from "./helpers.ts";

const FIX = new URL("./fixtures/", import.meta.url).pathname;

test("api units: a signal death's exit code is 128 + its number", () => {
  assert.deepEqual([signalExitCode("SIGKILL"), signalExitCode("SIGTERM"), signalExitCode("SIGINT")], [137, 143, 130]);
  assert.equal(signalExitCode("SIGNOPE"), 128);
});

/** Feeds chunks through lines() and collects what comes out. */
async function splitLines(chunks: Array<Uint8Array | string>): Promise<string[]> {
  const src = new ReadableStream<Uint8Array | string>({
    start(c) {
      for (const ch of chunks) c.enqueue(ch);
      c.close();
    },
  });
  return await collect(src.pipeThrough(lines()));
}

test("api units: lines() splits at \\n and \\r\\n, keeps a last line without newline and empty lines", async () => {
  const b = (s: string) => new TextEncoder().encode(s);
  assert.deepEqual(await splitLines([b("a\nb\r\n\nc")]), ["a", "b", "", "c"]);
  assert.deepEqual(await splitLines([b("a\r"), b("\nb\n")]), ["a", "b"], "a \\r\\n split across chunks");
  assert.deepEqual(await splitLines([b("x\n")]), ["x"], "no empty line after a final newline");
  assert.deepEqual(await splitLines([]), []);
  assert.deepEqual(await splitLines(["te", "xt\nmore"]), ["text", "more"], "strings pass too");
  assert.deepEqual(await splitLines([b("lo"), b("ng line "), b("without end")]), ["long line without end"]);
});

test("api units: lines() keeps a multi-byte character split across chunks whole", async () => {
  const bytes = new TextEncoder().encode("é€😀\nñ");
  // every split point, including inside each character's bytes
  for (let i = 1; i < bytes.length; i++) {
    assert.deepEqual(await splitLines([bytes.subarray(0, i), bytes.subarray(i)]), ["é€😀", "ñ"], `split at byte ${i}`);
  }
  const oneByOne = Array.from(bytes, (x) => new Uint8Array([x]));
  assert.deepEqual(await splitLines(oneByOne), ["é€😀", "ñ"]);
});

test("api: exitCode is never null once a process ended; the signal is named beside it", async () => {
  await using sb = await Sandbox.create();
  const p = await sb.commands.start(["sleep", "100"]);
  await p.kill("SIGKILL");
  const s = await p.status;
  assert.deepEqual([s.exitCode, s.signal, s.timedOut], [137, "SIGKILL", false]);
  const t = await sb.commands.run(["sleep", "100"], { timeoutSeconds: 0.5 });
  assert.deepEqual([t.exitCode, t.signal, t.timedOut], [137, "SIGKILL", true]);
  // a shell's own 128+n exit is an exit, not a signal
  const e = await sb.commands.run(["sh", "-c", "exit 130"]);
  assert.deepEqual([e.exitCode, e.signal], [130, null]);
});

test("api: a timeout under check: true throws TimeoutError carrying the result", async () => {
  await using sb = await Sandbox.create();
  const e = await sb.commands.run(["sh", "-c", "echo started; echo warming >&2; sleep 100"], { timeoutSeconds: 0.5, check: true })
    .catch((e: unknown) => e);
  assert.ok(e instanceof TimeoutError, String(e));
  assert.ok(e instanceof CommandTimeoutError);
  assert.equal(e.code, "TIMEOUT");
  const timedOut: boolean = e.result.timedOut;
  assert.deepEqual([timedOut, e.result.stdout, e.result.stderr, e.result.exitCode], [true, "started\n", "warming\n", 137]);
  assert.match(e.message, /timed out/);
  assert.match(e.message, /warming/);
});

test("api: CommandExitError's message ends with the tail of stderr", async () => {
  await using sb = await Sandbox.create();
  const e = await sb.commands.run(["sh", "-c", "seq 1 20 >&2; echo 'boom: no such thing' >&2; exit 2"], { check: true })
    .catch((e: unknown) => e);
  assert.ok(e instanceof CommandExitError, String(e));
  assert.equal(e.result.timedOut, false);
  assert.match(e.message, /exited with code 2/);
  assert.match(e.message, /boom: no such thing$/);
  assert.doesNotMatch(e.message, /\n1\n/, "the whole stderr went into the message, not its tail");
  const quiet = await sb.commands.run(["false"], { check: true }).then(() => assert.fail("false passed"), (e: Error) => e);
  assert.match(quiet.message, /exited with code 1; its stderr is empty/);
});

test("api: an unread stream never holds up status: 2 MiB on stderr, only stdout read, timeout", async () => {
  await using sb = await Sandbox.create();
  const p = await sb.commands.start(["sh", "-c", "echo out; head -c 2097152 /dev/zero >&2; sleep 100"], { timeoutSeconds: 1 });
  const out = await new Response(p.stdout).text();
  const s = await p.status;
  assert.deepEqual([out, s.timedOut, s.exitCode, s.signal], ["out\n", true, 137, "SIGKILL"]);
  // what stderr holds is bounded (its buffer and a pipe's capacity), and it is all there to read
  let n = 0;
  for await (const chunk of p.stderr) n += chunk.length;
  assert.ok(n > 0 && n <= 2097152, `stderr held ${n} bytes`);
});

test("api: an unread stream never holds up status: a killed chatty process", async () => {
  await using sb = await Sandbox.create();
  const p = await sb.commands.start(["sh", "-c", "head -c 3000000 /dev/zero; sleep 100"]);
  await new Promise((r) => setTimeout(r, 300));
  await p.kill("SIGKILL");
  const s = await p.status;
  assert.equal(s.exitCode, 137);
  await p.stdout.cancel();
});

test("api files: mkdir makes parents and is idempotent; { parents: false } is strict", async () => {
  await using sb = await Sandbox.create();
  const d = await sb.files.mkdir("/app/a/b/c");
  assert.deepEqual([d.path, d.name, d.type, d.mode], ["/app/a/b/c", "c", "dir", 0o755]);
  assert.match(d.auditId, /^aud_/);
  assert.equal((await sb.files.mkdir("/app/a/b/c")).type, "dir", "an existing directory is no error");
  await assert.rejects(sb.files.mkdir("/app/a/b/c", { parents: false }), ConflictError);
  await assert.rejects(sb.files.mkdir("/app/x/y", { parents: false }), NotFoundError);
  assert.equal((await sb.files.mkdir("/app/x", { parents: false, mode: 0o700 })).mode, 0o700);
  await sb.files.write("/app/file", "x");
  await assert.rejects(sb.files.mkdir("/app/file"), (e: unknown) => e instanceof ConflictError && /not a directory/.test(e.message));
});

test("api files: rename returns the new entry", async () => {
  await using sb = await Sandbox.create();
  await sb.files.write("/app/a.txt", "hello");
  const moved = await sb.files.rename("/app/a.txt", "/app/b.txt");
  assert.deepEqual([moved.path, moved.name, moved.type, moved.size], ["/app/b.txt", "b.txt", "file", 5]);
  assert.match(moved.auditId, /^aud_/);
  assert.equal(await sb.files.exists("/app/a.txt"), false);
});

test("api files: write takes string, Uint8Array, ArrayBuffer, other views, Blob and ReadableStream", async () => {
  await using sb = await Sandbox.create();
  const u8 = new TextEncoder().encode("abc");
  const cases: Array<[FileData, string]> = [
    ["text ✓", "text ✓"],
    [u8, "abc"],
    [u8.buffer, "abc"],
    [new DataView(u8.buffer, 1, 2), "bc"],
    [new Blob(["blob ", new Uint8Array([120])]), "blob x"],
    [new Blob(["streamed"]).stream(), "streamed"],
  ];
  for (const [i, [data, want]] of cases.entries()) {
    const w = await sb.files.write(`/app/w${i}`, data);
    assert.equal(await sb.files.readText(`/app/w${i}`), want, `case ${i}`);
    assert.equal(w.size, new TextEncoder().encode(want).length);
  }
});

test("api files: a write under /usr is PERMISSION_DENIED saying the path is read-only", async () => {
  await using sb = await Sandbox.create();
  const e = await sb.files.write("/usr/local/evil", "x").then(() => assert.fail("the write passed"), (e: Error) => e);
  assert.ok(e instanceof PermissionDeniedError, String(e));
  assert.match(e.message, /^files\.write "\/usr\/local\/evil": the path is read-only in the sandbox/);
  assert.match(e.message, /write under \/app/);
  assert.equal(e.details.readOnly, true);
});

test("api: info() reports the limits the sandbox really has, also those not set", async () => {
  await using sb = await Sandbox.create({ tmpSizeMb: 64 });
  const l = (await sb.info()).limits;
  const cores = availableParallelism(); // Node 20 has no navigator
  assert.ok(l.cpu !== undefined && l.cpu > 0 && l.cpu <= cores, `cpu ${l.cpu} of ${cores}`);
  assert.ok(l.memoryMb !== undefined && l.memoryMb > 16, `memoryMb ${l.memoryMb}`);
  assert.ok(l.pidsLimit !== undefined && l.pidsLimit > 16, `pidsLimit ${l.pidsLimit}`);
  assert.equal(l.tmpSizeMb, 64);
  if (!sb.capabilities().limits.memory) return; // no cgroups here: nothing of its own to report
  await using small = await Sandbox.create({ memoryMb: 100, cpu: 0.5, pidsLimit: 64 });
  assert.deepEqual((await small.info()).limits, { cpu: 0.5, memoryMb: 100, pidsLimit: 64, tmpSizeMb: 512 });
});

test("api: names are unique among live sandboxes; connect by name; a destroyed sandbox's name is free", async () => {
  const name = `api-${crypto.randomUUID().slice(0, 8)}`;
  {
    await using a = await Sandbox.create({ name });
    const e = await Sandbox.create({ name }).then(async (b) => (await b.destroy(), null), (e: Error) => e);
    assert.ok(e instanceof ConflictError, `a second sandbox took the name: ${e}`);
    assert.equal((e as ConflictError).details.id, a.id);
    assert.match(e.message, /already named/);
    const c = await Sandbox.connect({ name });
    assert.equal(c.id, a.id);
    await c.disconnect();
  }
  await assert.rejects(Sandbox.connect({ name }), NotFoundError);
  await assert.rejects(Sandbox.connect({ name: "../x" }), (e: unknown) => e instanceof InvalidInputError && e.details.field === "name");
  await using again = await Sandbox.create({ name });
  assert.equal((await again.info()).name, name);
});

test("api: two processes creating the same name at once: exactly one wins", async () => {
  const name = `race-${crypto.randomUUID().slice(0, 8)}`;
  const [cmd, ...args] = runtimeCommand(`${FIX}scripts/named.ts`);
  const kids = await Promise.all([0, 1].map(() => runtime().spawn(cmd!, [...args, name], { stdin: "piped", stderr: "inherit" })));
  try {
    const lines = await Promise.all(kids.map(async (k) => {
      const r = k.stdout!.pipeThrough(new TextDecoderStream()).getReader();
      let s = "";
      while (!s.includes("\n")) {
        const { value, done } = await r.read();
        if (done) break;
        s += value;
      }
      r.releaseLock();
      return s.trim();
    }));
    assert.deepEqual(lines.map((l) => l.startsWith("sbx-") ? "id" : l).sort(), ["CONFLICT", "id"], lines.join(" | "));
  } finally {
    for (const k of kids) await k.stdin!.close().catch(() => {});
    await Promise.all(kids.map((k) => k.status));
  }
});

test("api messages: a missing program is NOT_FOUND naming it; guest output cannot forge it", async () => {
  await using sb = await Sandbox.create();
  const e = await sb.commands.run(["pythn3", "-c", "1"]).then(() => assert.fail("it ran"), (e: Error) => e);
  assert.ok(e instanceof NotFoundError, String(e));
  assert.match(e.message, /^program "pythn3" not found: no such command on the sandbox's PATH \(\/usr\/local\/sbin:/);
  assert.deepEqual(e.details, { field: "argv", program: "pythn3" });
  await assert.rejects(sb.commands.start(["/app/nope"]), (e: unknown) => e instanceof NotFoundError && /no such file/.test(e.message));
  // a program that prints the runner's markers and exits 127 is a normal result
  for (const mark of ["N", "C", "X"]) {
    const r = await sb.commands.run(["sh", "-c", `printf ${mark}; exit 127`]);
    assert.deepEqual([r.stdout, r.exitCode], [mark, 127]);
  }
  // the sandbox's PATH may be the caller's own
  const r = await sb.commands.run(["tool"], { env: { PATH: "/app/bin" } }).catch((e: Error) => e);
  assert.ok(r instanceof NotFoundError && r.message.includes("(/app/bin)"), String(r));
  await sb.files.write("/app/bin/tool", "#!/bin/sh\necho tool ran\n", { mode: 0o755 });
  assert.equal((await sb.commands.run(["tool"], { env: { PATH: "/app/bin:/usr/bin:/bin" } })).stdout, "tool ran\n");
});

test("api messages: a bad cwd is a typed error naming the field and the path", async () => {
  await using sb = await Sandbox.create();
  const e = await sb.commands.run(["true"], { cwd: "/does/not/exist" }).then(() => assert.fail("it ran"), (e: Error) => e);
  assert.ok(e instanceof NotFoundError, String(e));
  assert.deepEqual(e.details, { field: "cwd", path: "/does/not/exist" });
  assert.match(e.message, /^cwd "\/does\/not\/exist": there is no such directory in the sandbox; pass an existing directory/);
  await sb.files.write("/app/f", "x");
  const f = await sb.commands.run(["true"], { cwd: "/app/f" }).then(() => assert.fail("it ran"), (e: Error) => e);
  assert.ok(f instanceof NotADirectoryError, String(f));
  assert.equal(f.details.field, "cwd");
  assert.equal((await sb.commands.run(["pwd"], { cwd: "app" })).stdout, "/app\n");
});

test("api messages: MVM_BWRAP naming a program that is not bubblewrap says what failed and what to do", async () => {
  const [cmd, ...args] = runtimeCommand(`${FIX}scripts/no-bwrap.ts`);
  const c = await runtime().spawn(cmd!, args, { env: { MVM_BWRAP: "/usr/bin/false" }, stderr: "null" });
  const out = JSON.parse(await new Response(c.stdout).text());
  await c.status;
  assert.equal(out.code, "TRANSPORT");
  assert.match(out.message, /bubblewrap \(\/usr\/bin\/false, named by MVM_BWRAP\) exited before the sandbox was up/);
  assert.match(out.message, /unset it to use the host.s bwrap/);
});

test("api: a shell command line runs only with shell: true; a string without it is refused", async () => {
  await using sb = await Sandbox.create();
  const r = await sb.commands.run("echo $HOME | tr a-z A-Z; echo $((6*7))", { shell: true });
  assert.deepEqual([r.stdout, r.exitCode], ["/ROOT\n42\n", 0]);
  const e = await sb.commands.run("echo $HOME" as unknown as string[]).then(() => assert.fail("it ran"), (e: Error) => e);
  assert.ok(e instanceof InvalidInputError && e.details.field === "argv" && /shell: true/.test(e.message), String(e));
  await assert.rejects(
    sb.commands.run(["echo", "x"], { shell: true } as never),
    (e: unknown) => e instanceof InvalidInputError && e.details.field === "shell",
  );
  const p = await sb.commands.start("printf '%s' \"$0\"", { shell: true });
  assert.equal((await p.output()).stdout, "/bin/sh");
  const f = await sb.commands.run("echo bad >&2; exit 4", { shell: true, check: true }).then(() => null, (e: Error) => e);
  assert.ok(f instanceof CommandExitError && /"\/bin\/sh" exited with code 4/.test(f.message), String(f));
});

test("api: setTags replaces a live sandbox's tags, seen by info(), list() and other handles", async () => {
  const mark = crypto.randomUUID().slice(0, 8);
  await using sb = await Sandbox.create({ tags: { run: mark, stage: "a" } });
  const other = await Sandbox.connect(sb.id);
  try {
    assert.match(await other.setTags({ run: mark, stage: "b" }), /^aud_/);
    assert.deepEqual((await sb.info()).tags, { run: mark, stage: "b" });
    assert.deepEqual((await Sandbox.list({ tags: { run: mark, stage: "b" } })).map((s) => s.id), [sb.id]);
    assert.deepEqual(await Sandbox.list({ tags: { run: mark, stage: "a" } }), []);
    await assert.rejects(sb.setTags({ bad: 1 } as unknown as Record<string, string>), InvalidInputError);
    const events = await collect(sb.logs());
    const set = events.find((e) => e.type === "tags.set");
    assert.ok(set?.type === "tags.set" && set.tags.stage === "b");
  } finally {
    await other.disconnect();
  }
});

test("api files: write([{ path, data }, …]) writes several files in order and returns their entries", async () => {
  await using sb = await Sandbox.create();
  const out = await sb.files.write([
    { path: "/app/p/a.py", data: "print(1)" },
    { path: "/app/p/b.bin", data: new Uint8Array([1, 2, 3]), mode: 0o600 },
    { path: "/app/p/c.txt", data: new Blob(["c"]) },
  ], { mode: 0o640 });
  assert.deepEqual(out.map((f) => [f.path, f.size, f.mode]), [["/app/p/a.py", 8, 0o640], ["/app/p/b.bin", 3, 0o600], [
    "/app/p/c.txt",
    1,
    0o640,
  ]]);
  assert.equal(await sb.files.readText("/app/p/a.py"), "print(1)");
  await assert.rejects(
    sb.files.write([{ path: "/app/q/ok", data: "x" }, { path: "", data: "y" }]),
    (e: unknown) => e instanceof InvalidInputError && e.details.field === "files[1].path",
  );
  assert.equal(await sb.files.exists("/app/q/ok"), false, "a batch with a bad entry wrote something");
});

test("api: Sandbox.create({ signal, timeoutSeconds }) gives up and leaves nothing behind", async () => {
  const mark = crypto.randomUUID().slice(0, 8);
  const before = new Set(readdirSync(STATE));
  const ac = new AbortController();
  const why = new Error("caller gave up");
  setTimeout(() => ac.abort(why), 20);
  const e = await Sandbox.create({ signal: ac.signal, tags: { run: mark } }).then(
    async (sb) => (await sb.destroy(), null),
    (e: unknown) => e,
  );
  // a create that beat the abort is fine; one that lost it rejects with the reason and is gone
  if (e !== null) assert.equal(e, why);
  const t = await Sandbox.create({ timeoutSeconds: 0.001, tags: { run: mark } }).then(
    async (sb) => (await sb.destroy(), null),
    (e: unknown) => e,
  );
  // the same for a timeout (a create that claims the warm pool's spare can beat even 1 ms)
  if (t !== null) assert.ok(t instanceof TimeoutError, String(t));
  assert.deepEqual(await Sandbox.list({ tags: { run: mark } }), []);
  // a folder of these creates (tagged run=mark) left behind; the warm pool's untagged spares are the engine's own
  const ours = (d: string) => {
    try {
      return JSON.parse(readFileSync(`${STATE}/${d}/meta.json`, "utf8")).tags?.run === mark;
    } catch {
      return false;
    }
  };
  assert.deepEqual(readdirSync(STATE).filter((d) => !before.has(d) && ours(d)), [], "a sandbox folder was left behind");
  const aborted = AbortSignal.abort(why);
  await assert.rejects(Sandbox.create({ signal: aborted }), (x: unknown) => x === why);
  await assert.rejects(
    Sandbox.create({ timeoutSeconds: -1 }),
    (x: unknown) => x instanceof InvalidInputError && x.details.field === "timeoutSeconds",
  );
});

test("api: two clients setting one sandbox's tags and TTL at the same moment both keep their change", async () => {
  await using sb = await Sandbox.create({ ttl: 300 });
  const [cmd, ...args] = runtimeCommand(`${FIX}scripts/meta-writer.ts`);
  const kids = await Promise.all(
    ["tags", "ttl"].map((what) => runtime().spawn(cmd!, [...args, sb.id, what, "40"], { stdin: "null", stderr: "inherit" })),
  );
  let timer: ReturnType<typeof setTimeout> | undefined;
  const ended = await Promise.race([
    Promise.all(kids.map(async (k) => [(await new Response(k.stdout).text()).trim(), (await k.status).code])),
    new Promise<null>((res) => timer = setTimeout(() => res(null), 60_000)),
  ]).finally(() => clearTimeout(timer));
  if (ended === null) { for (const k of kids) k.kill("SIGKILL"); }
  assert.deepEqual(ended, [["done", 0], ["done", 0]]);
  const info = await sb.info();
  assert.deepEqual(info.tags, { writer: "tags", i: "39" }, "the last tags were lost to a TTL update");
  assert.equal(info.ttlSeconds, 639, "the last TTL was lost to a tags update");
});

/** Runs a client script of fixtures/scripts to its end: its stdout and status, or null (killed) past 60 s. */
async function runClient(name: string, env: Record<string, string> = {}) {
  const [cmd, ...args] = runtimeCommand(`${FIX}scripts/${name}`);
  const kid = await runtime().spawn(cmd!, args, { stdin: "null", stderr: "inherit", env });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const ended = await Promise.race([
    Promise.all([new Response(kid.stdout).text(), kid.status]),
    new Promise<null>((res) => timer = setTimeout(() => res(null), 60_000)),
  ]).finally(() => clearTimeout(timer));
  if (ended === null) kid.kill("SIGKILL");
  return ended;
}

test("api: a client that exits (its children SIGKILLed, as Deno does) right after its first create, its warm spare still starting, leaves no sandbox, folder or cgroup", async () => {
  const state = mkdtempSync(`${tmpdir()}/mvm-quick-exit-`);
  const tag = rootTag(`${state}/sandboxes`);
  // this state root's groups, on hybrid (one hierarchy per controller) and pure v2 hosts alike
  const groups = () =>
    ["", ...readdirSync("/sys/fs/cgroup")].flatMap((h) => {
      try {
        return readdirSync(`/sys/fs/cgroup/${h}/mvm/${tag}`).filter((n) => n.startsWith("sbx-")).map((n) =>
          `/sys/fs/cgroup/${h}/mvm/${tag}/${n}`
        );
      } catch {
        return [];
      }
    });
  const folders = () => readdirSync(`${state}/sandboxes`).filter((n) => n.startsWith("sbx-"));
  try {
    const ended = await runClient("quick-exit.ts", { MVM_STATE_DIR: state });
    assert.ok(ended !== null && /^sbx-/.test(ended[0].trim()), `the client did not create and exit: ${JSON.stringify(ended)}`);
    // the supervisors see their owner gone and end what they started (a spare mid-start once it is up)
    await waitFor(() => folders().length === 0 && groups().length === 0, 10_000);
    assert.deepEqual({ folders: folders(), groups: groups() }, { folders: [], groups: [] });
  } finally {
    // whatever was left: its processes killed through its groups, then its files
    for (const g of groups()) {
      try {
        writeFileSync(`${g}/cgroup.kill`, "1");
      } catch { /* a v1 group */ }
    }
    rmSync(state, { recursive: true, force: true });
  }
});

test("api: a client process that used file and command streams every way exits by itself once it is done", async () => {
  const ended = await runClient("files-exit.ts");
  assert.ok(ended !== null, "the client was still alive 60 s after its work: a handle the SDK left open keeps it alive");
  assert.deepEqual([ended[0].trim(), ended[1].code], ["done", 0]);
});
