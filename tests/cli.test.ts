// The command line (src/cli.ts) as people use it: each verb run as a child process against real
// local sandboxes (ls, create, exec, cp in and out with folders, logs, info, stop, rm, rm --all),
// including `ls` after a detached owner crashed; help for every verb; errors as one line with a
// non-zero exit.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { Sandbox, type SandboxInfo, Snapshot } from "../mod.ts";
import { runtime } from "../src/runtime/mod.ts";
import { collectText } from "../src/streams.ts";
import { PEOPLE_VERBS } from "../src/cli/people.ts";
import { parseArgs } from "../src/cli/args.ts";
import { runtimeCommand, STATE } from "./helpers.ts";

const CLI = new URL("../src/cli.ts", import.meta.url).pathname;
const FIX = new URL("./fixtures/", import.meta.url).pathname;

/** Runs the CLI to its end: exit code, stdout, stderr. */
async function cli(args: string[], stdin?: string): Promise<{ code: number | null; out: string; err: string }> {
  const [cmd, ...pre] = runtimeCommand(CLI);
  const c = await runtime().spawn(cmd!, [...pre, ...args], { stdin: stdin === undefined ? "null" : "piped" });
  if (stdin !== undefined) {
    const w = c.stdin!.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const [out, err, s] = await Promise.all([collectText(c.stdout!), collectText(c.stderr!), c.status]);
  return { code: s.code, out, err };
}

test("cli: help for every verb, --version in mvmctl's shape, errors as one line with a non-zero exit", async () => {
  // two at a time (the machine's cores): each is a process start
  for (const verb of Object.keys(PEOPLE_VERBS)) {
    const [r, flag] = await Promise.all([cli(["help", verb]), cli([verb, "--help"])]);
    assert.equal(r.code, 0, r.err);
    assert.ok(r.out.includes(`mvm ${verb}`), `help ${verb}: ${r.out}`);
    assert.equal(flag.out, r.out);
  }
  const all = await cli(["help"]);
  for (const verb of Object.keys(PEOPLE_VERBS)) assert.match(all.out, new RegExp(`^  ${verb} `, "m"));
  assert.match((await cli(["--version"])).out, /^mvmctl \d+\.\d+\.\d+ /);
  const audit = await cli(["audit", "verify", "--json"]);
  const report = JSON.parse(audit.out);
  assert.ok(["VERIFIED", "NOT_FOUND"].includes(report.status), audit.out);
  assert.equal(audit.code, report.status === "VERIFIED" ? 0 : 1);
  for (
    const [args, code, re] of [
      [["frobnicate"], 2, /^mvm: INVALID_INPUT: no verb "frobnicate"/],
      [["ls", "--bogus"], 2, /^mvm: INVALID_INPUT: unknown flag --bogus/],
      [["exec", "sbx-000000000000", "--", "true"], 1, /^mvm: NOT_FOUND: no live sandbox sbx-000000000000/],
      [["info", "../etc"], 1, /^mvm: INVALID_INPUT: /],
      [["exec", "-t", "sbx-000000000000", "--", "sh"], 1, /^mvm: NOT_FOUND: no live sandbox sbx-000000000000/],
    ] as const
  ) {
    const r = await cli([...args]);
    assert.equal(r.code, code, `${args.join(" ")}: ${r.err}`);
    assert.match(r.err, re);
    assert.equal(r.err.trim().split("\n").length, 1, `one line: ${r.err}`);
  }
  const p = parseArgs(["-it", "x", "-eA=1", "--cwd=/app", "--", "-c", "--x"], {
    i: { kind: "bool", short: "i" },
    t: { kind: "bool", short: "t" },
    env: { kind: "list", short: "e" },
    cwd: { kind: "string" },
  });
  assert.deepEqual([p.flags, p.positionals, p.dashAt], [{ i: true, t: true, env: ["A=1"], cwd: "/app" }, ["x", "-c", "--x"], 1]);
});

test("cli: create, ls, exec (streams, stdin, exit codes, timeout), cp folders both ways, logs, info, stop, rm", async () => {
  const tag = `cli${Date.now()}`;
  const c = await cli(["create", "--tag", `suite=${tag}`, "--ttl", "5m", "--name", tag]);
  assert.equal(c.code, 0, c.err);
  const id = c.out.trim();
  assert.match(id, /^sbx-[a-z0-9]{12}$/);
  const host = mkdtempSync(`${tmpdir()}/mvm-cli-`);
  try {
    const ls = await cli(["ls"]);
    assert.match(ls.out, /^ID +STATE +NAME/);
    assert.match(ls.out, new RegExp(`^${id} +running +${tag} +host .* yes +suite=${tag}$`, "m"));
    const listed: SandboxInfo[] = JSON.parse((await cli(["ls", "--json", "--tag", `suite=${tag}`])).out);
    assert.deepEqual(listed.map((s) => [s.id, s.state, s.detached]), [[id, "running", true]]);

    const e = await cli(["exec", id, "--", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert.deepEqual([e.code, e.out, e.err], [3, "out\n", "err\n"]);
    const i = await cli(["exec", "-i", id, "-e", "P=x", "--cwd", "/app", "--", "sh", "-c", 'tr a-z A-Z; echo "$P $(pwd)"'], "hello\n");
    assert.deepEqual([i.code, i.out], [0, "HELLO\nx /app\n"]);
    assert.equal((await cli(["exec", id, "--", "sh", "-c", "kill -9 $$"])).code, 137);
    const t = await cli(["exec", "--timeout", "1", id, "--", "sleep", "30"]);
    assert.equal(t.code, 124);
    assert.match(t.err, /timed out after 1 s/);

    mkdirSync(`${host}/in/sub`, { recursive: true });
    writeFileSync(`${host}/in/a.txt`, "A");
    writeFileSync(`${host}/in/sub/b.bin`, new Uint8Array(300_000).fill(7));
    assert.equal((await cli(["cp", `${host}/in`, `${id}:/app/in`])).code, 0);
    const found = await cli(["exec", id, "--", "sh", "-c", "cd /app/in && find . -type f | sort && wc -c < sub/b.bin"]);
    assert.equal(found.out, "./a.txt\n./sub/b.bin\n300000\n");
    const back = await cli(["cp", `${id}:/app/in`, `${host}/out`]);
    assert.equal(back.code, 0, back.err);
    assert.equal(readFileSync(`${host}/out/a.txt`, "utf8"), "A");
    assert.equal(statSync(`${host}/out/sub/b.bin`).size, 300_000);
    assert.equal((await cli(["cp", `${id}:/app/in/a.txt`, `${host}/single.txt`])).code, 0);
    assert.equal(readFileSync(`${host}/single.txt`, "utf8"), "A");
    assert.equal((await cli(["cp", `${host}/single.txt`, `${id}:/app/`])).code, 0);
    assert.equal((await cli(["exec", id, "--", "cat", "/app/single.txt"])).out, "A");

    const logs = await cli(["logs", id, "--json"]);
    const types = logs.out.trim().split("\n").map((l) => JSON.parse(l).type);
    assert.ok(types.includes("created") && types.includes("files.write") && types.includes("process.exited"), types.join(","));
    const info = await cli(["info", id]);
    assert.match(info.out, /^state +running$/m);
    assert.match(info.out, new RegExp(`^tags +suite=${tag}$`, "m"));
    const paused = await cli(["pause", id]);
    if (paused.code === 0) {
      assert.equal(JSON.parse((await cli(["info", id, "--json"])).out).state, "paused");
      assert.equal((await cli(["resume", id])).code, 0);
      assert.equal(JSON.parse((await cli(["info", id, "--json"])).out).state, "running");
    } else assert.match(paused.err, /^mvm: UNSUPPORTED: /, "pause either works or says why not");
    assert.equal((await cli(["stop", id])).code, 0);
    assert.equal(JSON.parse((await cli(["info", id, "--json"])).out).state, "stopped");
    const rm = await cli(["rm", id]);
    assert.deepEqual([rm.code, rm.out], [0, `${id} removed\n`]);
    assert.equal(existsSync(`${STATE}/${id}`), false);
  } finally {
    rmSync(host, { recursive: true, force: true });
    await (await Sandbox.connect(id).catch(() => null))?.destroy();
  }
});

test("cli: ls shows what a crashed detached owner left; rm --all --tag removes exactly those", async () => {
  const tag = `crash${Date.now()}`;
  const [cmd, ...pre] = runtimeCommand(`${FIX}scripts/crash-owner.ts`);
  const c = await runtime().spawn(cmd!, [...pre, "leftover", tag], { stderr: "null" });
  const id = (await collectText(c.stdout!)).trim();
  assert.equal((await c.status).signal, "SIGKILL");
  assert.match(id, /^sbx-/);
  const other = await Sandbox.create({ tags: { leftover: `${tag}-not` } });
  try {
    const second = (await cli(["create", "--tag", `leftover=${tag}`])).out.trim();
    const ls = await cli(["ls", "--json", "--tag", `leftover=${tag}`]);
    assert.deepEqual(JSON.parse(ls.out).map((s: SandboxInfo) => [s.id, s.state]).sort(), [[id, "running"], [second, "running"]].sort());
    assert.match((await cli(["ls"])).out, new RegExp(`^${id} +running`, "m"));
    const rm = await cli(["rm", "--all", "--tag", `leftover=${tag}`]);
    assert.equal(rm.code, 0, rm.err);
    assert.deepEqual(rm.out.trim().split("\n").sort(), [`${id} removed`, `${second} removed`].sort());
    assert.equal(existsSync(`${STATE}/${id}`), false);
    assert.equal(existsSync(`${STATE}/${second}`), false);
    assert.equal((await other.info()).state, "running", "a sandbox without the tag is left alone");
    assert.equal((await cli(["rm", "--all", "--tag", `leftover=${tag}`])).out, "");
  } finally {
    await other.destroy();
    await (await Sandbox.connect(id).catch(() => null))?.destroy();
  }
});

test("cli: cp out of a sandbox writes only inside the destination, whatever the guest planted", async () => {
  const host = mkdtempSync(`${tmpdir()}/mvm-cli-`);
  const victim = `${host}/victim`;
  mkdirSync(victim);
  await using sb = await Sandbox.create();
  try {
    // symlinks to host-looking paths, a folder named like a traversal, a fifo
    await sb.commands.run([
      "sh",
      "-c",
      [
        "mkdir -p /app/d/sub",
        "echo hi > /app/d/file",
        `ln -s ${victim} /app/d/link-to-victim`,
        "ln -s / /app/d/root-link",
        "ln -s /etc/passwd /app/d/sub/passwd-link",
        "mkfifo /app/d/fifo",
      ].join(" && "),
    ], { check: true });
    const r = await cli(["cp", `${sb.id}:/app/d`, `${host}/out`]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /skipped .*link-to-victim/);
    assert.equal(readFileSync(`${host}/out/file`, "utf8"), "hi\n");
    assert.equal(existsSync(`${host}/out/link-to-victim`), false);
    assert.equal(existsSync(`${host}/out/root-link`), false);
    assert.equal(existsSync(`${host}/out/sub/passwd-link`), false);
    assert.deepEqual((await import("node:fs")).readdirSync(victim), []);
    // a destination that exists inside a copied folder is never written through
    mkdirSync(`${host}/out2`);
    const again = await cli(["cp", `${sb.id}:/app/d`, `${host}/out2`]);
    assert.equal(again.code, 0, again.err);
    assert.equal(readFileSync(`${host}/out2/d/file`, "utf8"), "hi\n");
  } finally {
    rmSync(host, { recursive: true, force: true });
  }
});

test("cli: snapshot, snapshot ls and rm, fork, create --snapshot", async () => {
  await using sb = await Sandbox.create();
  await sb.files.write("/app/a.txt", "from the parent");
  const forks: string[] = [];
  let snap = "";
  try {
    const s = await cli(["snapshot", sb.id, "--name", "cli-snap", "--retention", "600"]);
    assert.equal(s.code, 0, s.err);
    snap = s.out.trim();
    assert.match(snap, /^snap-[a-z0-9]{12}$/);
    const ls = await cli(["snapshot", "ls", "--json"]);
    assert.equal(ls.code, 0, ls.err);
    const mine = (JSON.parse(ls.out) as { id: string; name?: string; sandboxId: string }[]).find((x) => x.id === snap);
    assert.deepEqual([mine?.name, mine?.sandboxId], ["cli-snap", sb.id]);
    assert.match((await cli(["snapshot", "ls"])).out, new RegExp(`^${snap} +cli-snap +${sb.id} `, "m"));
    for (const args of [["create", "--snapshot", snap, "--json"], ["fork", sb.id, "--ttl", "5m", "--json"]]) {
      const r = await cli(args);
      assert.equal(r.code, 0, r.err);
      const info = JSON.parse(r.out) as SandboxInfo;
      forks.push(info.id);
      assert.equal(info.restoredFrom?.verified, true);
      const child = await Sandbox.connect(info.id);
      assert.equal(await child.files.readText("/app/a.txt"), "from the parent");
      await child.disconnect();
    }
    for (const id of forks.splice(0)) {
      const r = await cli(["rm", id]);
      assert.equal(r.code, 0, r.err);
    }
    const rm = await cli(["snapshot", "rm", snap]);
    assert.equal(rm.code, 0, rm.err);
    assert.match((await cli(["snapshot", "rm", snap])).err, /^mvm: NOT_FOUND: /);
  } finally {
    for (const id of forks) await (await Sandbox.connect(id).catch(() => null))?.destroy();
    for (const s of await Snapshot.list()) if (s.sandboxId === sb.id) await Snapshot.delete(s.id).catch(() => {});
  }
});
