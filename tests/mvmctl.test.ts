// The mvmctl engine against a SCRIPTED STAND-IN CLI (tests/fixtures/machine/standin.sh, labelled as
// such): the argv it spawns for every verb equals the shared fixtures (tests/fixtures/machine/*.argv,
// one argument per line), the boot envelope is read fail-closed, prod machines and create env are
// refused before any call, the CLI's failures stay apart from guest exit codes, and the bounds from
// the environment hold. No sandbox runs here; the real path (our CLI over the local engine) is
// tests/mvmctl-live.test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import process from "node:process";
import { NetworkPolicy, NotFoundError, Sandbox, Snapshot, TimeoutError, TransportError, UnsupportedError, verifyAudit } from "../mod.ts";
import { parseCheckpoint, parseColdResult, parseEnvelope, parseRecords } from "../src/engines/mvmctl/wire.ts";
import { splitCliLine } from "../src/engines/mvmctl/process.ts";
import { parseMachine } from "../src/cli/machine.ts";
import { collect } from "./helpers.ts";

const DIR = new URL("./fixtures/machine/", import.meta.url).pathname;
const STANDIN = `${DIR}standin.sh`;
const ENV_KEYS = [
  "MVM_CLI_BIN",
  "STANDIN_DIR",
  "STANDIN_ENVELOPE",
  "STANDIN_BUILD_MODE",
  "STANDIN_WAIT_CODE",
  "STANDIN_WAIT_LINE",
  "STANDIN_FAIL",
  "STANDIN_SLEEP",
  "STANDIN_WAIT_SLEEP",
  "STANDIN_VERSION",
  "STANDIN_PAUSE_LINE",
  "STANDIN_CHECKPOINT",
  "MVM_MACHINE_TIMEOUT_SEC",
  "MVM_MACHINE_MAX_OUTPUT_BYTES",
  "MVM_SDK_MODE",
];

/** Runs `fn` with the stand-in as MVM_CLI_BIN and a fresh call log; restores the environment after. */
async function withStandin(env: Record<string, string>, fn: (calls: () => string[][]) => Promise<void>): Promise<void> {
  const saved = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));
  const dir = mkdtempSync(`${tmpdir()}/mvm-standin-`);
  for (const k of ENV_KEYS) delete process.env[k];
  Object.assign(process.env, { MVM_CLI_BIN: STANDIN, STANDIN_DIR: dir, ...env });
  const calls = () => readdirSync(dir).map((f) => readFileSync(`${dir}/${f}`, "utf8").replace(/\n$/, "").split("\n"));
  try {
    await fn(calls);
  } finally {
    for (const k of ENV_KEYS) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
    // a `proc stdin` that commands.run closed without waiting may still be writing its record
    await new Promise((r) => setTimeout(r, 200));
    rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
  }
}

const fixture = (name: string) => readFileSync(`${DIR}${name}.argv`, "utf8").replace(/\n$/, "").split("\n");
const FIXTURES = readdirSync(DIR).filter((f) => f.endsWith(".argv")).map((f) => f.slice(0, -5)).sort();

test("mvmctl (stand-in CLI): every verb the engine spawns matches its argv fixture", async () => {
  await withStandin({}, async (calls) => {
    const sb = await Sandbox.create({
      engine: "mvmctl",
      name: "web",
      ttl: 60,
      tags: { team: "x" },
      network: NetworkPolicy.denyByDefault().allow("api.example.com", 443),
    });
    assert.equal(sb.id, "sbx-standin00001");
    assert.equal(sb.engine, "mvmctl");
    const r = await sb.commands.run(["sh", "-lc", "echo ok"], { env: { B: "2", A: "1" }, cwd: "/app", timeoutSeconds: 30 });
    assert.deepEqual([r.stdout, r.stderr, r.exitCode, r.signal, r.timedOut], ["out", "err\n\n", 0, null, false]);
    process.env.STANDIN_WAIT_SLEEP = "1";
    const p = await sb.commands.start(["sleep", "1"]);
    delete process.env.STANDIN_WAIT_SLEEP;
    await p.kill("SIGTERM");
    await p.kill("SIGKILL");
    await p.output();
    assert.equal((await sb.files.write("/app/x", "data")).size, 4);
    assert.equal(await sb.files.readText("/app/x"), "data");
    assert.deepEqual((await sb.files.list("/app")).map((f) => [f.path, f.type, f.size]), [["/app/x", "file", 4]]);
    await sb.files.mkdir("/app/d", { parents: true, mode: 0o755 });
    const e = await sb.files.remove("/app/x", { recursive: true }).catch((e) => e);
    assert.ok(e instanceof NotFoundError, String(e));
    assert.equal(e.details.exitCode, 1);
    assert.match(String(e.details.stderr), /no such file/);
    await sb.files.rename("/app/x", "/app/y");
    const events = [];
    for await (const ev of sb.logs({ follow: true })) events.push(ev);
    assert.deepEqual(events.map((e) => e.type), ["created", "console"]);
    const line = events[1];
    assert.ok(line?.type === "console");
    assert.equal(line.line, "plain console line");
    const info = await sb.info();
    assert.deepEqual([info.state, info.name, info.ttlSeconds, info.tags], ["running", "web", 60, { team: "x" }]);
    assert.equal((await Sandbox.list({ engine: "mvmctl", tags: { team: "x" } })).length, 1);
    await sb.pause();
    assert.equal(sb.state, "paused");
    await sb.resume();
    assert.equal(sb.state, "running");
    await sb.setTtl("2m");
    const snap = await sb.snapshot({ name: "v1" });
    assert.deepEqual([snap.id, snap.name, snap.class, snap.sandboxId, snap.parent], ["snap-standin00001", "v1", "fs_quick", "web", null]);
    assert.deepEqual(snap.digests.content.map((c) => c.name), ["app/x"]);
    const child = await Sandbox.create({ engine: "mvmctl", name: "web2", snapshot: snap.id, ttl: 90 });
    assert.deepEqual([child.id, child.restoredFrom?.snapshotId, child.restoredFrom?.verified], ["sbx-standin00002", snap.id, false]);
    assert.deepEqual((await Snapshot.list({ engine: "mvmctl" })).map((s) => s.id), [snap.id]);
    await Snapshot.delete(snap.id, { engine: "mvmctl" });
    await sb.stop();
    await sb.destroy();
    assert.ok(calls().some((c) => c.join(" ") === "machine set-ttl web2 90s"), "the fork gets the lease asked for");

    const seen = calls().map((c) => c.join("\n"));
    for (const name of FIXTURES) {
      assert.ok(
        seen.includes(fixture(name).join("\n")),
        `no call matched fixture ${name}.argv:\n${fixture(name).join(" ")}\n\ncalls:\n${
          seen.map((s) => s.replaceAll("\n", " ")).join("\n")
        }`,
      );
    }
  });
});

test("mvmctl (stand-in CLI): the boot envelope is read fail-closed, and a refused machine is removed", async () => {
  for (
    const bad of [
      '{"schema_version":2,"vm_id":"a","build_mode":"dev"}',
      '{"schema_version":1,"vm_id":"","build_mode":"dev"}',
      '{"schema_version":1,"vm_id":"a","build_mode":"debug"}',
      "not json",
    ]
  ) {
    await withStandin({ STANDIN_ENVELOPE: bad }, async (calls) => {
      await assert.rejects(Sandbox.create({ engine: "mvmctl", name: "web" }), TransportError);
      assert.ok(calls().some((c) => c.join(" ") === "machine rm web --force"), "the refused machine is removed");
    });
  }
  assert.throws(() => parseEnvelope(""), /no envelope/);
  assert.deepEqual(parseEnvelope('progress\n{"schema_version":1,"vm_id":"v","build_mode":"prod"}'), { vmId: "v", buildMode: "prod" });
  assert.equal(parseRecords([{ name: "a" }])[0].buildMode, "prod", "a record without build_mode counts as prod");
});

test("mvmctl (stand-in CLI): prod machines refuse guest verbs before any call; create env and limits are refused up front", async () => {
  await withStandin({ STANDIN_ENVELOPE: '{"schema_version":1,"vm_id":"sbx-standin00001","build_mode":"prod"}' }, async (calls) => {
    const sb = await Sandbox.create({ engine: "mvmctl", name: "web" });
    const before = calls().length;
    await assert.rejects(sb.commands.run(["true"]), UnsupportedError);
    await assert.rejects(sb.files.read("/etc/hostname"), UnsupportedError);
    await assert.rejects(sb.files.write("/app/x", "x"), UnsupportedError);
    await assert.rejects(sb.files.list("/"), UnsupportedError);
    assert.equal(calls().length, before, "no call was made for a refused verb");
    assert.equal(sb.capabilities().commands, false);
    await sb.destroy();
  });
  await withStandin({}, async (calls) => {
    await assert.rejects(
      Sandbox.create({ engine: "mvmctl", env: { A: "1" } }),
      (e: unknown) => e instanceof UnsupportedError && e.details.field === "env",
    );
    await assert.rejects(Sandbox.create({ engine: "mvmctl", memoryMb: 256 }), UnsupportedError);
    assert.equal(calls().length, 0);
  });
});

test("mvmctl (stand-in CLI): pty is refused before any call, naming upstream's proc start (it has no tty flag); capabilities().pty is false", async () => {
  await withStandin({}, async (calls) => {
    const sb = await Sandbox.create({ engine: "mvmctl", name: "web" });
    const before = calls().length;
    await assert.rejects(
      sb.commands.start(["sh"], { pty: true }),
      (e: unknown) => e instanceof UnsupportedError && /machine proc start/.test(e.message),
    );
    assert.equal(calls().length, before, "no call was made for a refused pty");
    assert.equal(sb.capabilities().pty, false);
    await sb.destroy();
  });
});

test("mvmctl (stand-in CLI): pause/resume results are read fail-closed; pause({ toDisk }) is refused before any call", async () => {
  await withStandin({ STANDIN_PAUSE_LINE: "" }, async (calls) => {
    const sb = await Sandbox.create({ engine: "mvmctl", name: "web" });
    const e = await sb.pause().catch((e) => e);
    assert.ok(e instanceof TransportError && /did not print "web: paused/.test(e.message), String(e));
    const before = calls().length;
    await assert.rejects(sb.pause({ toDisk: true }), UnsupportedError);
    assert.equal(calls().length, before, "no call was made for a refused tier");
  });
  await withStandin({ STANDIN_PAUSE_LINE: "other: paused" }, async () => {
    const sb = await Sandbox.create({ engine: "mvmctl", name: "web" });
    await assert.rejects(sb.pause(), TransportError, "a line about another machine does not count");
  });
  assert.deepEqual(parseColdResult("progress\nsbx-a: paused (epoch 3, vmstate 10 B, mem 20 B)\n", ["web", "sbx-a"], "paused"), {
    state: "paused",
    epoch: 3,
    vmstateBytes: 10,
    memBytes: 20,
  });
  assert.deepEqual(parseColdResult("web: resumed\n", ["web"], "resumed"), { state: "resumed" });
  assert.throws(() => parseColdResult("web: resumed\n", ["web"], "paused"), TransportError);
});

test("mvmctl (stand-in CLI): checkpoint metadata is read fail-closed; vm_full, retention and what checkpoint fork cannot carry are refused", async () => {
  const good = {
    id: "snap-a",
    class: "fs_quick",
    vm_name: "web",
    tag: null,
    parent: null,
    created_unix: 1,
    content: [{ name: "a", sha256: "0".repeat(64) }],
    meta_digest: `sha256:${"0".repeat(64)}`,
    audit_ref: "x",
  };
  assert.equal(parseCheckpoint(good).id, "snap-a");
  for (
    const bad of [
      { ...good, class: "vm_full" },
      { ...good, id: "" },
      { ...good, vm_name: undefined },
      { ...good, meta_digest: "md5:00" },
      { ...good, content: [{ name: "a" }] },
      { ...good, created_unix: "yesterday" },
      [good],
    ]
  ) assert.throws(() => parseCheckpoint(bad), TransportError, JSON.stringify(bad));
  await withStandin({ STANDIN_CHECKPOINT: JSON.stringify({ ...good, class: "vm_full" }) }, async () => {
    const sb = await Sandbox.create({ engine: "mvmctl", name: "web" });
    await assert.rejects(sb.snapshot(), TransportError);
  });
  await withStandin({}, async (calls) => {
    const sb = await Sandbox.create({ engine: "mvmctl", name: "web" });
    await assert.rejects(
      sb.snapshot({ class: "vm_full" }),
      (e: unknown) => e instanceof UnsupportedError && /memory checkpoint/.test(e.message),
    );
    const before = calls().length;
    await assert.rejects(
      sb.snapshot({ retention: "1h" }),
      (e: unknown) => e instanceof UnsupportedError && e.details.field === "retention",
    );
    await assert.rejects(
      Sandbox.create({ engine: "mvmctl", snapshot: "snap-standin00001", tags: { a: "b" } }),
      (e: unknown) => e instanceof UnsupportedError && e.details.field === "tags",
    );
    assert.equal(calls().length, before, "no call was made for a refused option");
  });
});

test("mvmctl (stand-in CLI): every result's auditId names a signed entry of the SDK side's chain", async () => {
  await withStandin({}, async () => {
    const sb = await Sandbox.create({ engine: "mvmctl", name: "web" });
    const ids: Array<[string, string]> = [
      [(await sb.commands.run(["sh", "-lc", "echo ok"])).auditId, "process.exited"],
      [(await sb.files.write("/app/x", "data")).auditId, "files.write"],
      [(await sb.files.mkdir("/app/d")).auditId, "files.mkdir"],
      [(await sb.files.rename("/app/x", "/app/y")).auditId, "files.rename"],
      [await sb.pause(), "paused"],
      [await sb.resume(), "resumed"],
      [await sb.setTtl(60), "ttl.set"],
      [await sb.destroy(), "destroyed"],
    ];
    const entries = new Map((await collect(sb.audit())).map((e) => [e.id, e]));
    for (const [id, event] of ids) {
      assert.match(id, /^aud_[0-9a-f]{20}$/, event);
      assert.equal(entries.get(id)?.event, event);
      assert.deepEqual(entries.get(id)?.labels, { sandbox: sb.id, source: "sdk", engine: "mvmctl" });
    }
    assert.ok([...entries.values()].some((e) => e.event === "created" && e.data?.vm === "web"));
    const report = await verifyAudit();
    assert.equal(report.status, "VERIFIED", JSON.stringify(report.firstBad));
  });
});

test("mvmctl (stand-in CLI): proc wait's exit codes are the guest's; 128+signal and 124 decode; the CLI's line leaves stderr", async () => {
  const cases: Array<[Record<string, string>, { exitCode: number; signal: string | null; timedOut: boolean; stderr: string }]> = [
    [{ STANDIN_WAIT_CODE: "3" }, { exitCode: 3, signal: null, timedOut: false, stderr: "err\n\n" }],
    [{ STANDIN_WAIT_CODE: "137", STANDIN_WAIT_LINE: "killed by signal 9" }, {
      exitCode: 137,
      signal: "SIGKILL",
      timedOut: false,
      stderr: "err\n",
    }],
    [{ STANDIN_WAIT_CODE: "124", STANDIN_WAIT_LINE: "timed out" }, { exitCode: 137, signal: "SIGKILL", timedOut: true, stderr: "err\n" }],
    // a guest that prints the marker but exits otherwise keeps its line and its code
    [{ STANDIN_WAIT_CODE: "1", STANDIN_WAIT_LINE: "timed out" }, {
      exitCode: 1,
      signal: null,
      timedOut: false,
      stderr: "err\ntimed out\n",
    }],
  ];
  for (const [env, want] of cases) {
    await withStandin(env, async () => {
      const sb = await Sandbox.create({ engine: "mvmctl", name: "web" });
      const r = await sb.commands.run(["x"]);
      assert.deepEqual({ exitCode: r.exitCode, signal: r.signal, timedOut: r.timedOut, stderr: r.stderr }, want, JSON.stringify(env));
    });
  }
  assert.deepEqual(splitCliLine(new TextEncoder().encode("a\nb")), { guest: new TextEncoder().encode("a\n"), line: "b" });
  await withStandin({ STANDIN_WAIT_CODE: "255", STANDIN_WAIT_LINE: "mvm: TRANSPORT: the keeper died" }, async () => {
    const sb = await Sandbox.create({ engine: "mvmctl", name: "web" });
    await assert.rejects(sb.commands.run(["x"]), TransportError);
  });
});

test("mvmctl (stand-in CLI): a failing CLI is TRANSPORT with argv, exit code and stderr; missing binary, foreign --version, bounds", async () => {
  await withStandin({ STANDIN_FAIL: "disk on fire" }, async () => {
    const e = await Sandbox.list({ engine: "mvmctl" }).catch((e) => e);
    assert.ok(e instanceof TransportError, String(e));
    assert.deepEqual([e.details.exitCode, e.details.stderr], [2, "boom: disk on fire\n"]);
    assert.deepEqual((e.details.argv as string[]).slice(1), ["machine", "ls", "--json"]);
    assert.match(e.message, /exited with code 2: boom: disk on fire/);
  });
  await withStandin({ MVM_CLI_BIN: "/nonexistent/mvmctl" }, async () => {
    await assert.rejects(Sandbox.list({ engine: "mvmctl" }), (e: unknown) => e instanceof NotFoundError && /MVM_CLI_BIN/.test(e.message));
  });
  await withStandin({ STANDIN_VERSION: "docker 27.0.1" }, async () => {
    await assert.rejects(
      Sandbox.list({ engine: "mvmctl" }),
      (e: unknown) => e instanceof UnsupportedError && /not "mvmctl X\.Y\.Z"/.test(e.message),
    );
  });
  await withStandin({ MVM_MACHINE_MAX_OUTPUT_BYTES: "20" }, async () => {
    await assert.rejects(
      Sandbox.list({ engine: "mvmctl" }),
      (e: unknown) => e instanceof TransportError && /MVM_MACHINE_MAX_OUTPUT_BYTES/.test(e.message),
    );
  });
  await withStandin({ MVM_MACHINE_TIMEOUT_SEC: "0.3", STANDIN_SLEEP: "1.5" }, async () => {
    await assert.rejects(
      Sandbox.list({ engine: "mvmctl" }),
      (e: unknown) => e instanceof TimeoutError && /MVM_MACHINE_TIMEOUT_SEC/.test(e.message),
    );
  });
});

test("mvmctl (stand-in CLI): MVM_SDK_MODE=live with MVM_CLI_BIN selects the mvmctl engine; capabilities say what it offers", async () => {
  await withStandin({ MVM_SDK_MODE: "live" }, async () => {
    const sb = await Sandbox.create({ name: "web" });
    assert.equal(sb.engine, "mvmctl");
    const caps = sb.capabilities();
    assert.deepEqual([caps.commands, caps.files, caps.logs, caps.pause, caps.snapshot, caps.fork, caps.limits.memory, caps.network], [
      true,
      true,
      true,
      true,
      true,
      true,
      false,
      "allowlist",
    ]);
  });
});

test("our CLI (src/cli.ts machine …) accepts every argv fixture", () => {
  for (const name of FIXTURES.filter((n) => n !== "version")) {
    const argv = fixture(name);
    assert.equal(argv[0], "machine", name);
    const { name: verb, parsed } = parseMachine(argv.slice(1));
    assert.equal(verb.replace(" ", "-"), name, `${name}.argv parsed as ${verb}`);
    assert.equal(
      parsed.positionals[0] === "web" || parsed.positionals[0] === "snap-standin00001" || verb.endsWith("ls") || verb === "run",
      true,
      name,
    );
  }
  assert.throws(() => parseMachine(["fs", "stat", "web"]), /usage/);
});
