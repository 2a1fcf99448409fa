// The local engine against real bubblewrap sandboxes: isolation, streams,
// timeouts, limits, lifecycle, parent death, TTL and errors. Every sandbox is
// created with `await using` (or destroyed in finally) so a failing test
// leaves nothing behind.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { chmodSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import process from "node:process";
import {
  CommandExitError,
  ConflictError,
  InvalidInputError,
  type LogEvent,
  NotFoundError,
  PermissionDeniedError,
  Sandbox,
  SecretRef,
  TransportError,
} from "../mod.ts";
import { runtime } from "../src/runtime/mod.ts";
import { collectText } from "../src/streams.ts";
import {
  firstLine,
  pidsMatching,
  processAlive,
  rss,
  RUNTIME,
  runtimeCommand,
  sandboxPids,
  sha256Stream,
  STATE,
  waitFor,
} from "./helpers.ts";

const FIX = new URL("./fixtures/", import.meta.url).pathname;
const text = (s: string) => new TextEncoder().encode(s);

test("local: the seed's first example runs for real", async () => {
  await using sb = await Sandbox.create({ workloadId: "agent-tool" });
  assert.equal(sb.engine, "local");
  assert.equal(sb.state, "running");
  await sb.files.write("/app/main.py", "print('hello from mvm')");
  const r = await sb.commands.run(["python3", "/app/main.py"], { timeoutSeconds: 30 });
  assert.equal(r.stdout, "hello from mvm\n");
  assert.equal(r.exitCode, 0);
  assert.match(r.auditId, /^aud_/);
  const events = [];
  for await (const ev of sb.logs()) events.push(ev);
  assert.ok(events.some((e) => e.id === r.auditId && e.type === "process.exited"), "the result's auditId names a log event");
});

test("local isolation: host processes are invisible and the sandbox has its own hostname", async () => {
  const marker = `${Date.now() % 100000}.${Math.floor(Math.random() * 1000)}`;
  const host = await runtime().spawn("sleep", [marker], { stdout: "null", stderr: "null" });
  try {
    await using sb = await Sandbox.create();
    const r = await sb.commands.run(["sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '; echo; hostname"]);
    assert.ok(!r.stdout.includes(`sleep ${marker}`), "a host process shows inside");
    assert.ok(r.stdout.trim().endsWith(sb.id));
    const ps = await sb.commands.run(["sh", "-c", "ls -d /proc/[0-9]* | wc -l"]);
    assert.ok(Number(ps.stdout) < 10, `too many pids visible: ${ps.stdout}`);
  } finally {
    host.kill("SIGKILL");
    await host.status;
  }
});

test("local isolation: a canary in the host's /root cannot be read, /usr cannot be written", async () => {
  const canary = `/root/mvm-canary-${process.pid}-${Date.now()}`;
  writeFileSync(canary, "secret-canary", { mode: 0o644 });
  try {
    await using sb = await Sandbox.create();
    const r = await sb.commands.run(["cat", canary]);
    assert.notEqual(r.exitCode, 0);
    assert.ok(!r.stdout.includes("secret-canary"));
    await assert.rejects(sb.files.read(canary), NotFoundError);
    const w = await sb.commands.run(["sh", "-c", "touch /usr/mvm-x; echo $? ; touch /etc/mvm-x; echo $?"]);
    assert.equal(w.stdout, "1\n1\n");
    await assert.rejects(sb.files.write("/usr/mvm-x", "x"), PermissionDeniedError);
    assert.equal(existsSync("/usr/mvm-x"), false);
    assert.equal(readFileSync(canary, "utf8"), "secret-canary");
  } finally {
    rmSync(canary, { force: true });
  }
});

test("local isolation: a server on the host's loopback cannot be reached", async () => {
  const server = createServer((s) => s.end("hello-from-host\n"));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  try {
    await using sb = await Sandbox.create();
    const r = await sb.commands.run([
      "python3",
      "-c",
      `import socket\ns=socket.socket(); s.settimeout(2)\ntry:\n  s.connect(("127.0.0.1", ${port})); print("CONNECTED", s.recv(100))\nexcept Exception as e:\n  print("refused", type(e).__name__)`,
    ], { timeoutSeconds: 10 });
    assert.match(r.stdout, /^refused/);
    const ifs = await sb.commands.run(["cat", "/proc/net/dev"]);
    assert.deepEqual(ifs.stdout.split("\n").slice(2).filter(Boolean).map((l) => l.trim().split(":")[0]), ["lo"]);
  } finally {
    server.close();
  }
});

test("local isolation: sandbox processes are not host uid 0 and have no capabilities", async () => {
  await using sb = await Sandbox.create();
  const marker = `${Date.now() % 100000}.5`;
  const p = await sb.commands.start(["sleep", marker]);
  try {
    assert.ok(await waitFor(() => pidsMatching(`sleep ${marker}`).length > 0, 3000));
    for (const pid of pidsMatching(`sleep ${marker}`)) {
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      const uid = Number(/^Uid:\s+(\d+)/m.exec(status)![1]);
      assert.notEqual(uid, 0, "sandboxed process runs as host root");
      if (status.includes("\nName:\tsleep")) assert.match(status, /^CapEff:\s+0+$/m);
    }
  } finally {
    await p.kill("SIGKILL");
    await p.status;
  }
});

test("local commands: exit codes, stderr, env, cwd, stdin, check", async () => {
  await using sb = await Sandbox.create({ env: { GREETING: "hi" } });
  const r = await sb.commands.run(["sh", "-c", "echo out; echo err >&2; echo $GREETING $EXTRA; pwd; exit 4"], {
    env: { EXTRA: "there" },
    cwd: "/app",
  });
  assert.equal(r.exitCode, 4);
  assert.equal(r.signal, null);
  assert.equal(r.stdout, "out\nhi there\n/app\n");
  assert.equal(r.stderr, "err\n");
  const c = await sb.commands.run(["tr", "a-z", "A-Z"], { stdin: "shout\n" });
  assert.equal(c.stdout, "SHOUT\n");
  await assert.rejects(
    sb.commands.run(["false"], { check: true }),
    (e: unknown) => e instanceof CommandExitError && e.result.exitCode === 1,
  );
  await assert.rejects(sb.commands.run(["true"], { env: { LD_PRELOAD: "/x.so" } }), InvalidInputError);
  await assert.rejects(sb.commands.run(["true"], { cwd: "/nope" }), NotFoundError);
  await assert.rejects(sb.commands.run(["mvm-no-such-program"]), NotFoundError);
});

test("local commands: start gives streams both ways, kill reaches the whole tree", async () => {
  await using sb = await Sandbox.create();
  {
    await using p = await sb.commands.start(["cat"]);
    const w = p.stdin.getWriter();
    const out = collectText(p.stdout);
    await w.write(text("ping\n"));
    await w.write(text("pong\n"));
    await w.close();
    assert.equal(await out, "ping\npong\n");
    assert.equal((await p.status).exitCode, 0);
  }
  const marker = `${Date.now() % 100000}.7`;
  const p = await sb.commands.start(["sh", "-c", `sleep ${marker} & sleep ${marker}; echo never`]);
  assert.ok(await waitFor(() => pidsMatching(`sleep ${marker}`).length === 2, 3000));
  await p.kill("SIGTERM");
  const s = await p.status;
  assert.ok(s.signal !== null || s.exitCode !== 0);
  assert.ok(await waitFor(() => pidsMatching(`sleep ${marker}`).length === 0, 3000), "the tree survived kill");
});

test("local commands: a kill() right after start() always reaches the command (50 times)", async () => {
  // the job process waits for its frame with signals ignored (guest code cannot end it early); it must hand
  // the command its default dispositions before the SDK learns it started, or an early kill is lost
  await using sb = await Sandbox.create();
  const lost: string[] = [];
  for (let i = 0; i < 50; i++) {
    const p = await sb.commands.start(["sleep", "100"]);
    await p.kill("SIGTERM");
    const s = await Promise.race([p.status, new Promise<null>((r) => setTimeout(() => r(null), 5000))]);
    if (s?.signal !== "SIGTERM") {
      lost.push(`${i}: ${JSON.stringify(s)}`);
      await p.kill("SIGKILL");
    }
  }
  assert.deepEqual(lost, []);
});

test("local commands: timeoutSeconds kills the whole tree and reports timedOut", async () => {
  await using sb = await Sandbox.create();
  const t0 = Date.now();
  // a marker of this run's own: another suite on this host (Deno's and Bun's run at once) may sleep too
  const marker = `1000.${Date.now() % 100000}${Math.floor(Math.random() * 1000)}`;
  const r = await sb.commands.run(["sh", "-c", `sleep ${marker} & sleep ${marker}`], { timeoutSeconds: 1 });
  assert.equal(r.timedOut, true);
  assert.equal(r.signal, "SIGKILL");
  assert.ok(Date.now() - t0 < 5000);
  assert.ok(await waitFor(() => pidsMatching(`sleep ${marker}`).length === 0, 3000), "a process outlived the timeout");
});

test("local commands: an AbortSignal kills the process", async () => {
  await using sb = await Sandbox.create();
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 200);
  const r = await sb.commands.run(["sleep", "30"], { signal: ac.signal });
  assert.equal(r.signal, "SIGKILL");
});

test("local streams: status resolves only after every byte was delivered", async () => {
  await using sb = await Sandbox.create();
  const p = await sb.commands.start(["sh", "-c", "seq 1 8000; echo tail >&2"]);
  const s = await p.status;
  assert.equal(s.exitCode, 0);
  const out = await collectText(p.stdout);
  const err = await collectText(p.stderr);
  assert.equal(out.split("\n").length, 8001);
  assert.ok(out.endsWith("7999\n8000\n"));
  assert.equal(err, "tail\n");
});

test("local streams: 200 MB of stdout read slowly arrives intact, parent memory bounded", async () => {
  await using sb = await Sandbox.create();
  const N = 200_000_000;
  const gen = `seq 1 30000000 | head -c ${N}`;
  const ref = await runtime().spawn("sh", ["-c", `${gen} | sha256sum`]);
  const expected = (await collectText(ref.stdout!)).split(" ")[0];
  const warm = await sb.commands.start(["head", "-c", "50000000", "/dev/zero"]);
  await sha256Stream(warm.stdout, 32);
  const before = rss();
  let peak = before;
  const p = await sb.commands.start(["sh", "-c", gen]);
  const timer = setInterval(() => peak = Math.max(peak, rss()), 20);
  const got = await sha256Stream(p.stdout, 32);
  clearInterval(timer);
  assert.equal(got.bytes, N);
  assert.equal(got.hex, expected);
  assert.equal((await p.status).exitCode, 0);
  assert.ok(peak - before < 64 * 1024 * 1024, `memory grew by ${((peak - before) / 1048576).toFixed(1)} MB`);
});

test("local streams: destroying the sandbox mid-stream ends the stream with a typed error", async () => {
  const sb = await Sandbox.create();
  try {
    const p = await sb.commands.start(["yes"]);
    const reader = p.stdout.getReader();
    await reader.read();
    const t0 = Date.now();
    const destroyed = sb.destroy();
    await assert.rejects(
      (async () => {
        for (;;) if ((await reader.read()).done) return;
      })(),
      TransportError,
    );
    await destroyed;
    assert.ok(Date.now() - t0 < 5000);
  } finally {
    await sb.destroy();
  }
});

test("local limits: a process allocating past memoryMb is killed and reported oomKilled", async () => {
  await using sb = await Sandbox.create({ memoryMb: 64 });
  const r = await sb.commands.run(["python3", "-c", "x = bytearray(300 * 1024 * 1024); print('survived')"], { timeoutSeconds: 30 });
  assert.equal(r.oomKilled, true);
  assert.equal(r.signal, "SIGKILL");
  assert.ok(!r.stdout.includes("survived"));
  const ok = await sb.commands.run(["python3", "-c", "x = bytearray(8 * 1024 * 1024); print('fine')"]);
  assert.equal(ok.stdout, "fine\n");
  assert.equal(ok.oomKilled, false);
});

test("local limits: pidsLimit stops a fork bomb inside the sandbox", async () => {
  await using sb = await Sandbox.create({ pidsLimit: 20 });
  const r = await sb.commands.run(["sh", "-c", "for i in $(seq 1 60); do sleep 5 & done; wait"], { timeoutSeconds: 20 });
  assert.match(r.stderr, /fork|Resource temporarily unavailable|Cannot/i);
});

test("local lifecycle: stop keeps state explicit, wrong-state calls are CONFLICT, dead ones NOT_FOUND", async () => {
  const sb = await Sandbox.create();
  try {
    assert.equal((await sb.info()).state, "running");
    await sb.stop();
    assert.equal(sb.state, "stopped");
    assert.equal((await sb.info()).state, "stopped");
    await assert.rejects(sb.commands.run(["true"]), ConflictError);
    await sb.destroy();
    assert.equal(sb.state, "destroyed");
    await assert.rejects(sb.commands.run(["true"]), NotFoundError);
    await assert.rejects(Sandbox.connect(sb.id), NotFoundError);
    assert.equal(existsSync(`${STATE}/${sb.id}`), false);
  } finally {
    await sb.destroy();
  }
});

test("local lifecycle: detach, connect, list by tags; disposing a connected handle only disconnects", async () => {
  const tag = `t${Date.now()}`;
  const sb = await Sandbox.create({ tags: { suite: tag } });
  try {
    const id = await sb.detach();
    {
      await using again = await Sandbox.connect(id);
      assert.equal((await again.commands.run(["echo", "again"])).stdout, "again\n");
      assert.equal((await again.info()).detached, true);
    }
    const listed = await Sandbox.list({ tags: { suite: tag } });
    assert.deepEqual(listed.map((i) => i.id), [id]);
    assert.equal((await Sandbox.list({ tags: { suite: "other" } })).filter((i) => i.id === id).length, 0);
  } finally {
    await (await Sandbox.connect(sb.id).catch(() => sb)).destroy();
  }
  assert.equal(existsSync(`${STATE}/${sb.id}`), false);
});

test("local lifecycle: TTL is enforced on a detached sandbox with no client", async () => {
  const [cmd, ...args] = runtimeCommand(`${FIX}scripts/owner.ts`);
  const c = await runtime().spawn(cmd, [...args, "--detach", "--ttl", "3"], { stderr: "piped" });
  const id = (await collectText(c.stdout!)).trim();
  const err = await collectText(c.stderr!);
  assert.equal((await c.status).code, 0, err);
  assert.match(id, /^sbx-/);
  const sb = await Sandbox.connect(id);
  assert.equal((await sb.info()).detached, true);
  assert.ok(await waitFor(() => !existsSync(`${STATE}/${id}`), 8000), "the sandbox outlived its TTL");
  await assert.rejects(Sandbox.connect(id), NotFoundError);
});

test("local lifecycle: a SIGKILLed owner takes its sandbox with it within 5 s", async () => {
  const [cmd, ...args] = runtimeCommand(`${FIX}scripts/owner.ts`);
  const c = await runtime().spawn(cmd, args, { stderr: "null" });
  const id = await firstLine(c.stdout!);
  assert.match(id, /^sbx-/);
  const dir = `${STATE}/${id}`;
  const cg = readFileSync(`${dir}/cgroups`, "utf8").trim().split("\n").filter((l) => l !== "-");
  const { reaper: init, supervisor: sup } = sandboxPids(dir);
  c.kill("SIGKILL");
  await c.status;
  const gone = () => !existsSync(dir) && !processAlive(init) && !processAlive(sup) && cg.every((d) => !existsSync(d));
  assert.ok(await waitFor(gone, 5000), "something of the sandbox outlived its owner");
});

test("local scale: 20 sandboxes at once each run a command and are all cleaned up", async () => {
  const sbs = await Promise.all(Array.from({ length: 20 }, () => Sandbox.create()));
  try {
    const rs = await Promise.all(sbs.map((sb, i) => sb.commands.run(["sh", "-c", `echo ${i}; hostname`])));
    rs.forEach((r, i) => {
      assert.equal(r.exitCode, 0);
      assert.equal(r.stdout, `${i}\n${sbs[i].id}\n`);
    });
  } finally {
    await Promise.all(sbs.map((sb) => sb.destroy()));
  }
  for (const sb of sbs) assert.equal(existsSync(`${STATE}/${sb.id}`), false);
});

test("local errors: a missing bubblewrap names the package to install", async () => {
  const [cmd, ...args] = runtimeCommand(`${FIX}scripts/no-bwrap.ts`);
  const c = await runtime().spawn(cmd, args, { env: { MVM_BWRAP: "/nonexistent/bwrap" }, stderr: "null" });
  const out = JSON.parse(await collectText(c.stdout!));
  assert.equal(out.code, "NOT_FOUND");
  assert.match(out.message, /bubblewrap/);
  assert.match(out.message, /apt-get install bubblewrap/);
});

test("local errors: a missing Deno permission names the flag", { skip: RUNTIME !== "deno" }, async () => {
  const c = await runtime().spawn(process.execPath, ["run", "--no-check", "--allow-read", "--allow-env", `${FIX}scripts/no-bwrap.ts`], {
    stderr: "null",
  });
  const out = JSON.parse(await collectText(c.stdout!));
  assert.equal(out.code, "PERMISSION_DENIED");
  assert.match(out.message, /--allow-run/);
});

test("local errors: unknown templates list what is available; unknown ids are NOT_FOUND, malformed ones INVALID_INPUT", async () => {
  await assert.rejects(Sandbox.create("ruby-9.9"), (e: unknown) => {
    assert.ok(e instanceof NotFoundError);
    assert.ok(Array.isArray(e.details.available) && (e.details.available as string[]).includes("host"));
    return true;
  });
  await assert.rejects(Sandbox.connect("sbx-000000000000"), NotFoundError);
  await assert.rejects(Sandbox.connect("../../etc"), InvalidInputError);
});

test("local logs: follow streams events as they happen and ends when the sandbox goes", async () => {
  const sb = await Sandbox.create();
  const seen: LogEvent[] = [];
  const reading = (async () => {
    for await (const ev of sb.logs({ follow: true })) seen.push(ev);
  })();
  try {
    const r = await sb.commands.run(["true"]);
    assert.ok(await waitFor(() => seen.some((e) => e.id === r.auditId), 3000), "the exit event did not arrive");
  } finally {
    await sb.destroy();
  }
  const t0 = Date.now();
  await reading;
  assert.ok(Date.now() - t0 < 2000);
  const types: string[] = seen.map((e) => e.type);
  for (const t of ["created", "started", "process.started", "process.exited", "destroy.requested"]) assert.ok(types.includes(t), t);
  assert.deepEqual(JSON.parse(JSON.stringify(seen)), seen);
  assert.deepEqual(seen.map((e) => e.seq), seen.map((_, i) => i));
});

test("local policy: secrets reach the guest only as placeholders", async () => {
  const from = () => "sk-local-test-value";
  await using sb = await Sandbox.create({ secrets: { API_KEY: SecretRef.from("openai-api-key", { hosts: ["api.openai.com"], from }) } });
  assert.match((await sb.commands.run(["sh", "-c", "echo $API_KEY"])).stdout, /^mvm-secret-[0-9a-f]{48}\n$/);
});

test("local rootless: an unprivileged user gets a sandbox whose timeouts still reach the whole tree", async (t) => {
  const home = mkdtempSync(`${tmpdir()}/mvm-rootless-`);
  try {
    chmodSync(home, 0o777);
    // the SDK's sources, copied where the unprivileged user can read them wherever this checkout is
    const repo = new URL("../", import.meta.url).pathname;
    cpSync(`${repo}mod.ts`, `${home}/repo/mod.ts`);
    cpSync(`${repo}src`, `${home}/repo/src`, { recursive: true });
    cpSync(`${FIX}scripts/rootless.ts`, `${home}/repo/tests/fixtures/scripts/rootless.ts`);
    const [cmd, ...args] = runtimeCommand(`${home}/repo/tests/fixtures/scripts/rootless.ts`);
    const probe = await runtime().spawn("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "--", cmd, "--version"], {
      stdout: "null",
      stderr: "null",
    });
    if ((await probe.status).code !== 0) {
      t.skip(`${cmd} is not executable by an unprivileged user here`);
      return;
    }
    const c = await runtime().spawn("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "--", cmd, ...args], {
      clearEnv: true,
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        HOME: home,
        MVM_STATE_DIR: `${home}/state`,
        DENO_DIR: `${home}/deno`,
        TMPDIR: home,
      },
    });
    const [stdout, stderr, status] = await Promise.all([collectText(c.stdout!), collectText(c.stderr!), c.status]);
    assert.equal(status.code, 0, stderr);
    const out = JSON.parse(stdout);
    assert.deepEqual(out.limits, { cpu: false, memory: false, pids: false });
    assert.equal(out.timedOut, true);
    assert.ok(out.timeoutMs < 5000);
    assert.equal(out.left, "0", "a process outlived the timeout");
    assert.equal(out.background, "started\n");
    assert.equal(out.read, "hi");
    assert.equal(out.uid, "0");
    assert.equal(out.limitRefused, true);
    // the warm pool's spare ends with its owner (its supervisor notices at once, and cleans up in a moment)
    await waitFor(() => readdirSync(`${home}/state/sandboxes`).length === 0, 5_000);
    assert.deepEqual(readdirSync(`${home}/state/sandboxes`), [], "a sandbox folder was left behind");
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});

test("local lifecycle: a killed supervisor takes its sandbox with it; the next list removes its folder", async () => {
  const sb = await Sandbox.create();
  try {
    await sb.detach();
    const dir = `${STATE}/${sb.id}`;
    const { supervisor: sup, reaper: init } = sandboxPids(dir);
    process.kill(sup, "SIGKILL");
    assert.ok(await waitFor(() => !processAlive(init), 5000), "the sandbox outlived its supervisor");
    let listed = true;
    for (let i = 0; i < 20 && (listed || existsSync(dir)); i++) {
      listed = (await Sandbox.list()).some((s) => s.id === sb.id);
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(listed, false);
    assert.equal(existsSync(dir), false);
  } finally {
    await (await Sandbox.connect(sb.id).catch(() => sb)).destroy().catch(() => {});
  }
});

test("local commands: kill(SIGTERM) reaches the guest, whose own handler decides how it ends", async () => {
  await using sb = await Sandbox.create();
  const p = await sb.commands.start(["sh", "-c", "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.1; done"]);
  const reader = p.stdout.getReader();
  assert.equal(new TextDecoder().decode((await reader.read()).value), "ready\n");
  reader.releaseLock();
  await p.kill("SIGTERM");
  const r = await p.output();
  assert.equal(r.stdout, "got-term\n");
  assert.equal(r.exitCode, 7);
  assert.equal(r.signal, null);
  const q = await sb.commands.start(["sleep", "100"]);
  await q.kill("SIGTERM");
  assert.deepEqual([(await q.status).exitCode, (await q.status).signal], [143, "SIGTERM"]);
});
