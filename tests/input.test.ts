// Bad input is refused up front, at the SDK layer, with a typed INVALID_INPUT that names the field and its
// allowed range: numbers out of range, sizes past the kernel's limits, malformed ids, the sandbox's root as
// a path, and byte streams whose chunks are not bytes (which must abort the write or kill the command, never
// commit or pass for a whole input). Also: destroy() always asks the engine.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  type ErrorCode,
  InvalidInputError,
  NotFoundError,
  Sandbox,
  type SandboxError,
  type SandboxInfo,
  type SandboxState,
} from "../mod.ts";
import { waitFor } from "./helpers.ts";

const enc = (s: string) => new TextEncoder().encode(s);

/** An assert.rejects validator: an InvalidInputError naming `field`, its message matching `message`. */
function invalidField(field: string, message?: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof InvalidInputError, `expected InvalidInputError, got ${String(e)}`);
    assert.equal(e.code, "INVALID_INPUT");
    assert.equal(e.details.field, field, e.message);
    if (message) assert.match(e.message, message);
    return true;
  };
}

/** A stream that yields `chunks` (anything, on purpose) one per pull. */
function streamOf(chunks: unknown[], onCancel?: () => void): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<unknown>({
    pull(c) {
      if (i < chunks.length) c.enqueue(chunks[i++]);
      else c.close();
    },
    cancel: onCancel,
  }) as ReadableStream<Uint8Array>;
}

/** The names in a sandbox directory, temporary files of writes included. */
async function names(sb: Sandbox, dir: string): Promise<string[]> {
  return (await sb.files.list(dir)).map((e) => e.name).sort();
}

// ---- timeouts

test("input: timeoutSeconds above 2,147,483 s is INVALID_INPUT giving the range", async () => {
  await using sb = await Sandbox.create();
  await assert.rejects(sb.commands.run(["true"], { timeoutSeconds: 2_147_484 }), invalidField("timeoutSeconds", /2,147,483/));
  await assert.rejects(sb.commands.start(["true"], { timeoutSeconds: 1e300 }), invalidField("timeoutSeconds", /2,147,483/));
});

test("input: timeoutSeconds of 0, a negative, NaN or Infinity is INVALID_INPUT", async () => {
  await using sb = await Sandbox.create();
  for (const t of [0, -1, NaN, Infinity, "5" as unknown as number]) {
    await assert.rejects(sb.commands.run(["true"], { timeoutSeconds: t }), invalidField("timeoutSeconds", /more than 0/), String(t));
  }
});

test("input: timeoutSeconds at its ceiling does not kill the command at once (no timer overflow)", async () => {
  await using sb = await Sandbox.create();
  const r = await sb.commands.run(["sh", "-c", "sleep 0.3; echo done"], { timeoutSeconds: 2_147_483 });
  assert.deepEqual([r.exitCode, r.timedOut, r.stdout], [0, false, "done\n"]);
});

// ---- TTL

test("input: a TTL of 9e15 seconds is INVALID_INPUT, not an untyped RangeError", async () => {
  await assert.rejects(Sandbox.create({ ttl: 9e15 }), invalidField("ttl", /30 days/));
  await assert.rejects(Sandbox.create({ ttlSeconds: 9e15 }), invalidField("ttlSeconds", /30 days/));
});

test("input: a TTL string over 30 days is INVALID_INPUT giving the range", async () => {
  for (const ttl of ["31d", "721h", "2592001", "99999999999999999999999d"]) {
    await assert.rejects(Sandbox.create({ ttl }), invalidField("ttl", /from 1 to 2,592,000 \(30 days\)/), ttl);
  }
});

test("input: a TTL of exactly 30 days is accepted", async () => {
  await using sb = await Sandbox.create({ ttl: "30d" });
  assert.equal((await sb.info()).ttlSeconds, 2_592_000);
});

// ---- resources

test("input: cpu outside 0.01..1024 is INVALID_INPUT giving the range", async () => {
  for (const cpu of [0.001, 0, -1, 1025, NaN, Infinity]) {
    await assert.rejects(Sandbox.create({ cpu }), invalidField("cpu", /at least 0\.01 and at most 1,024/), String(cpu));
  }
});

test("input: memoryMb outside 16..1 TiB, or not whole, is INVALID_INPUT giving the range", async () => {
  for (const memoryMb of [1, 15, 1e300, 1_048_577, 64.5]) {
    await assert.rejects(Sandbox.create({ memoryMb }), invalidField("memoryMb", /at least 16 and at most 1,048,576/), String(memoryMb));
  }
});

test("input: pidsLimit outside 16..4,194,304 is INVALID_INPUT giving the range", async () => {
  for (const pidsLimit of [1, 3, 15, 4_194_305, 20.5]) {
    await assert.rejects(Sandbox.create({ pidsLimit }), invalidField("pidsLimit", /at least 16 and at most 4,194,304/), String(pidsLimit));
  }
});

test("input: tmpSizeMb and rootfsSizeMb must be whole MiB from 1 to 1 TiB", async () => {
  for (const v of [0, 1e300, 1.5, -3]) {
    await assert.rejects(Sandbox.create({ tmpSizeMb: v }), invalidField("tmpSizeMb", /at least 1 and at most 1,048,576/), String(v));
    await assert.rejects(Sandbox.create({ rootfsSizeMb: v }), invalidField("rootfsSizeMb", /at least 1 and at most 1,048,576/), String(v));
  }
});

test("input: a sandbox at the memory and pids floors (memoryMb 16, pidsLimit 16) runs commands and file operations", async () => {
  await using sb = await Sandbox.create({ memoryMb: 16, pidsLimit: 16 });
  const r = await sb.commands.run(["sh", "-c", "echo hi | cat"]);
  assert.deepEqual([r.exitCode, r.stdout, r.stderr], [0, "hi\n", ""], JSON.stringify(r));
  await sb.files.write("/app/x", "bytes");
  assert.equal(await sb.files.readText("/app/x"), "bytes");
});

test("input: a sandbox at the cpu floor (0.01 cores) runs a command, slowly", async () => {
  // 1 ms of CPU per 100 ms: the SDK's own helpers (nsenter, setpriv, a shell) take seconds here
  await using sb = await Sandbox.create({ cpu: 0.01 });
  const r = await sb.commands.run(["sh", "-c", "echo hi"]);
  assert.deepEqual([r.exitCode, r.stdout, r.stderr], [0, "hi\n", ""], JSON.stringify(r));
});

// ---- env and argv sizes (the kernel's MAX_ARG_STRLEN is 131,072 bytes per string, NUL included)

test("input: a create env value past the kernel's per-string limit is INVALID_INPUT naming it", async () => {
  // "BIG=" + value + NUL must fit 131,072 bytes: the value may be 131,067 bytes
  await assert.rejects(
    Sandbox.create({ env: { BIG: "x".repeat(131_068) } }),
    invalidField("env.BIG", /131,072 bytes \(the kernel's MAX_ARG_STRLEN\), so this value may be at most 131,067 bytes/),
  );
});

test("input: an env value of exactly the kernel's per-string limit reaches the command", async () => {
  await using sb = await Sandbox.create({ env: { BIG: "x".repeat(131_067) } });
  const r = await sb.commands.run(["sh", "-c", 'printf %s "$BIG" | wc -c'], { env: { MORE: "y".repeat(131_066) } });
  assert.deepEqual([r.exitCode, r.stdout.trim(), r.stderr], [0, "131067", ""], JSON.stringify(r));
});

test("input: a create env over 1 MiB in all is INVALID_INPUT naming env and the budget", async () => {
  const env: Record<string, string> = {};
  for (let i = 0; i < 9; i++) env[`V${i}`] = "x".repeat(120_000);
  await assert.rejects(Sandbox.create({ env }), invalidField("env", /1,048,576 \(1 MiB\).*ARG_MAX/));
});

test("input: a command env value past the kernel's per-string limit is INVALID_INPUT naming it", async () => {
  await using sb = await Sandbox.create();
  await assert.rejects(sb.commands.run(["true"], { env: { BIG: "é".repeat(70_000) } }), invalidField("env.BIG", /MAX_ARG_STRLEN/));
});

test("input: an argv element past the kernel's per-string limit is INVALID_INPUT naming it", async () => {
  await using sb = await Sandbox.create();
  await assert.rejects(
    sb.commands.run(["echo", "ok", "y".repeat(131_072)]),
    invalidField("argv[2]", /at most 131,071 bytes .*MAX_ARG_STRLEN/),
  );
});

test("input: an argv element of exactly the kernel's per-string limit runs", async () => {
  await using sb = await Sandbox.create();
  const r = await sb.commands.run(["sh", "-c", 'printf %s "$1" | wc -c', "sh", "y".repeat(131_071)]);
  assert.deepEqual([r.exitCode, r.stdout.trim(), r.stderr], [0, "131071", ""]);
});

test("input: argv and env over 1 MiB together (the sandbox's env counted) is INVALID_INPUT giving the budget", async () => {
  const env: Record<string, string> = {};
  for (let i = 0; i < 6; i++) env[`V${i}`] = "x".repeat(120_000);
  await using sb = await Sandbox.create({ env });
  const argv = ["echo", ...Array.from({ length: 3 }, () => "y".repeat(120_000))];
  await assert.rejects(sb.commands.run(argv), (e: unknown) => {
    invalidField("env", /at most 1,048,576 \(1 MiB\)/)(e);
    const d = (e as SandboxError).details;
    assert.ok((d.envBytes as number) > 720_000 && (d.argvBytes as number) > 360_000, JSON.stringify(d));
    return true;
  });
  // with one argument fewer, the sandbox's env and the argv fit
  const r = await sb.commands.run(["sh", "-c", 'echo "$#"', "sh", ...argv.slice(2)]);
  assert.deepEqual([r.exitCode, r.stdout, r.stderr], [0, "2\n", ""]);
});

// ---- ids

test('input: Sandbox.connect("garbage") is INVALID_INPUT naming the id shape', async () => {
  for (const id of ["garbage", "", "sbx-", "sbx-ABCDEFGHIJKL", "sbx-000000000000/../x", 42 as unknown as string]) {
    await assert.rejects(Sandbox.connect(id), invalidField("id", /sbx-/), String(id));
  }
});

test("input: Sandbox.connect of a well-formed unknown id stays NOT_FOUND", async () => {
  await assert.rejects(Sandbox.connect("sbx-000000000000"), (e: unknown) => {
    assert.ok(e instanceof NotFoundError, String(e));
    return true;
  });
});

// ---- paths

test('input: files.remove("/") and its spellings are a typed refusal naming the root, not INTERNAL', async () => {
  await using sb = await Sandbox.create();
  await sb.files.write("/app/keep", "still here");
  for (const p of ["/", "//", "/.", ".", "./", "/app/..", "app/../"]) {
    await assert.rejects(sb.files.remove(p, { recursive: true }), invalidField("path", /root directory, which cannot be removed/), p);
  }
  assert.equal(await sb.files.readText("/app/keep"), "still here");
});

test('input: files.remove of a path ending in ".." or "." is INVALID_INPUT asking for the directory itself', async () => {
  await using sb = await Sandbox.create();
  await sb.files.mkdir("/app/x/y", { parents: true });
  await assert.rejects(sb.files.remove("/app/x/..", { recursive: true }), invalidField("path", /ends in "\.\."/));
  await assert.rejects(sb.files.remove("/app/x/.", { recursive: true }), invalidField("path", /ends in "\."/));
  assert.deepEqual(await names(sb, "/app/x"), ["y"]);
});

test("input: files.rename of the sandbox's root, or onto it, is INVALID_INPUT", async () => {
  await using sb = await Sandbox.create();
  await sb.files.write("/app/a", "a");
  await assert.rejects(sb.files.rename("/", "/app/b"), invalidField("from", /root directory, which cannot be renamed/));
  await assert.rejects(sb.files.rename("/app/a", "/"), invalidField("to", /root directory, which cannot be replaced/));
  assert.equal(await sb.files.readText("/app/a"), "a");
});

// ---- write streams, chunk by chunk

test("input: a write stream with a string chunk after bytes rejects naming its type and index, and commits nothing", async () => {
  await using sb = await Sandbox.create();
  await sb.files.mkdir("/app/d", { parents: true });
  const data = streamOf([enc("first "), new Uint8Array(70_000), "a string"]);
  await assert.rejects(sb.files.write("/app/d/out", data), (e: unknown) => {
    invalidField("data", /chunk 2 of the stream is a string, not bytes/)(e);
    assert.deepEqual([(e as SandboxError).details.chunkIndex, (e as SandboxError).details.chunkType], [2, "string"]);
    return true;
  });
  assert.deepEqual(await names(sb, "/app/d"), [], "no file and no temporary file");
});

test("input: a write stream with a number, null, array or object chunk rejects naming that type", async () => {
  await using sb = await Sandbox.create();
  const cases: Array<[unknown, string]> = [[42, "a number"], [null, "a null"], [[1, 2], "an Array"], [{ a: 1 }, "an object"], [
    new Map(),
    "an object \\(Map\\)",
  ]];
  for (const [chunk, type] of cases) {
    await assert.rejects(
      sb.files.write("/app/out", streamOf([enc("x"), chunk])),
      invalidField("data", new RegExp(`chunk 1 .* is ${type},`)),
      type,
    );
  }
  assert.equal(await sb.files.exists("/app/out"), false);
});

test("input: a write stream with a bad chunk leaves the existing file as it was", async () => {
  await using sb = await Sandbox.create();
  await sb.files.write("/app/out", "old content");
  await assert.rejects(sb.files.write("/app/out", streamOf([enc("new "), enc("content"), 7])), invalidField("data"));
  assert.equal(await sb.files.readText("/app/out"), "old content");
  assert.deepEqual(await names(sb, "/app"), ["out"]);
});

test("input: a write stream of strings only rejects and commits no empty file", async () => {
  await using sb = await Sandbox.create();
  await assert.rejects(sb.files.write("/app/out", streamOf(["a", "b"])), invalidField("data", /chunk 0 .* is a string/));
  assert.equal(await sb.files.exists("/app/out"), false);
});

test("input: a write stream of ArrayBuffer, DataView and Int16Array chunks writes their bytes", async () => {
  await using sb = await Sandbox.create();
  const buf = enc("abcdefgh");
  const chunks = [buf.buffer.slice(0, 2), new DataView(buf.buffer, 2, 2), new Int16Array(buf.buffer.slice(4, 8)), enc("!")];
  const w = await sb.files.write("/app/out", streamOf(chunks));
  assert.equal(w.size, 9);
  assert.equal(await sb.files.readText("/app/out"), "abcdefgh!");
});

test("input: a locked write stream is INVALID_INPUT, not a TypeError", async () => {
  await using sb = await Sandbox.create();
  const s = streamOf([enc("x")]);
  s.getReader();
  await assert.rejects(sb.files.write("/app/out", s), invalidField("data", /locked/));
});

// ---- stdin streams

test("input: a commands.start stdin stream that fails kills the process before its stdin ends, and status rejects with the error", async () => {
  await using sb = await Sandbox.create();
  let n = 0;
  const stdin = new ReadableStream<Uint8Array>({
    pull(c) {
      if (n++ < 3) c.enqueue(enc("line\n"));
      else c.error(new Error("the source broke"));
    },
  });
  await using p = await sb.commands.start(["sh", "-c", "cat > /app/got; echo whole > /app/flag"], { stdin });
  await assert.rejects(p.status, /the source broke/);
  assert.equal(await sb.files.exists("/app/flag"), false, "the process never saw end-of-input");
});

test("input: a commands.start stdin stream with a bad chunk rejects status with INVALID_INPUT naming it", async () => {
  await using sb = await Sandbox.create();
  await using p = await sb.commands.start(["sh", "-c", "cat > /dev/null; echo whole > /app/flag"], {
    stdin: streamOf([enc("ok\n"), { not: "bytes" }]),
  });
  await assert.rejects(p.status, (e: unknown) => {
    invalidField("stdin", /chunk 1 of the stream is an object, not bytes/)(e);
    assert.equal((e as SandboxError).details.chunkIndex, 1);
    return true;
  });
  assert.equal(await sb.files.exists("/app/flag"), false);
});

test("input: commands.run with a bad stdin stream rejects with INVALID_INPUT", async () => {
  await using sb = await Sandbox.create();
  await assert.rejects(sb.commands.run(["cat"], { stdin: streamOf([enc("a"), "b"]) }), invalidField("stdin", /is a string/));
});

test("input: a good stdin stream still reaches the command whole", async () => {
  await using sb = await Sandbox.create();
  const r = await sb.commands.run(["wc", "-c"], { stdin: streamOf([enc("abc"), new Uint8Array(100_000), enc("\n")]) });
  assert.deepEqual([r.exitCode, r.stdout.trim()], [0, "100004"]);
});

test("input: a command that exits without reading its stdin stream resolves, and the stream is cancelled", async () => {
  await using sb = await Sandbox.create();
  let cancelled = false;
  const endless = new ReadableStream<Uint8Array>({
    pull: (c) => c.enqueue(new Uint8Array(65536)),
    cancel: () => void (cancelled = true),
  });
  const r = await sb.commands.run(["true"], { stdin: endless });
  assert.deepEqual([r.exitCode, r.signal], [0, null]);
  assert.ok(await waitFor(() => cancelled, 5000), "the source was cancelled");
});

// ---- destroy

/** A Sandbox over a stand-in engine sandbox whose info() already says `destroyed`. */
function fakeSandbox(destroy: () => Promise<string>): { sb: Sandbox; calls: () => number } {
  let calls = 0;
  const info: SandboxInfo = {
    id: "sbx-000000000001",
    state: "destroyed" as SandboxState,
    engine: "local",
    image: "host",
    tags: {},
    createdAt: "",
    expiresAt: "",
    ttlSeconds: 1,
    detached: false,
    limits: {},
  };
  const inner = {
    id: info.id,
    info: () => Promise.resolve(info),
    destroy: () => (calls++, destroy()),
    capabilities: () => ({ commands: true }),
  };
  const engine = { name: "local", capabilities: () => ({}) };
  const Ctor = Sandbox as unknown as new (inner: unknown, engine: unknown, detached: boolean) => Sandbox;
  return { sb: new Ctor(inner, engine, false), calls: () => calls };
}

test("input: destroy() asks the engine even after info() said destroyed", async () => {
  const { sb, calls } = fakeSandbox(() => Promise.resolve("aud_1"));
  assert.equal((await sb.info()).state, "destroyed");
  assert.equal(await sb.destroy(), "aud_1");
  assert.equal(calls(), 1);
  assert.equal(sb.state, "destroyed");
});

test("input: destroy() of a sandbox the engine no longer knows resolves (idempotent)", async () => {
  const { sb, calls } = fakeSandbox(() => Promise.reject(new NotFoundError("gone")));
  assert.equal(await sb.destroy(), "");
  assert.equal(await sb.destroy(), "");
  assert.equal(calls(), 2);
});

test("input: destroy() passes on an engine failure other than NOT_FOUND", async () => {
  const { sb } = fakeSandbox(() => Promise.reject(Object.assign(new Error("teardown failed"), { code: "CLEANUP" as ErrorCode })));
  await assert.rejects(sb.destroy(), /teardown failed/);
});

test("input: destroy() twice on a real sandbox asks the engine twice and both resolve", async () => {
  const sb = await Sandbox.create();
  const first = await sb.destroy();
  const second = await sb.destroy();
  assert.match(first, /^aud_/);
  assert.equal(typeof second, "string");
  assert.equal(sb.state, "destroyed");
  await assert.rejects(sb.commands.run(["true"]), NotFoundError);
});
