/**
 * Unit tests of the local engine's pure helpers (no root, no sandbox): job framing, file names as
 * bytes, the bubblewrap command line, error classification and file-info parsing.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { agentError, classifyErrno } from "../src/engines/local/agent.ts";
import { bwrapArgv, INIT_SH } from "../src/engines/local/bwrap.ts";
import { decodeName, encodeName } from "../src/engines/local/bytes.ts";
import { absolute, parseInfos } from "../src/engines/local/files.ts";
import { jobFrame, shellWord } from "../src/engines/local/job.ts";
import { runnerArgv } from "../src/engines/local/runners.ts";
import { rootTag } from "../src/engines/local/state.ts";
import { ConflictError, NotFoundError } from "../mod.ts";

const text = (b: Uint8Array) => new TextDecoder().decode(b);
const input = {
  bwrap: "/h/bwrap",
  id: "sbx-000000000000",
  rootDir: "/s/sbx-000000000000/root",
  helpers: "/h",
  tmpBytes: 1 << 20,
  hostRoot: [{ name: "bin", target: "usr/bin" }, { name: "lib64", target: "/usr/lib64" }, { name: "sbin" }],
};

test("job: a shell word keeps quotes, newlines, $ and backslashes literal inside single quotes", () => {
  assert.equal(shellWord("it's"), `'it'\\''s'`);
  assert.equal(shellWord("a\nb $X \\ `x`"), "'a\nb $X \\ `x`'");
});

test("job: the frame starts with the number of lines that follow", () => {
  const f = text(jobFrame({ kind: "command", argv: ["echo", "a\nb\nc"], env: { A: "1\n2" }, cwd: "/app" }, true));
  const [n, ...rest] = f.split("\n");
  assert.equal(Number(n), rest.length - 1);
  assert.equal(rest.at(-1), "");
});

test("job: a command changes to its cwd, exports its env, finds its program, says X, then execs its argv on the slot's fifos", () => {
  const f = text(jobFrame({ kind: "command", argv: ["ls", "-l"], env: { A: "x" }, cwd: "/" }, true));
  assert.equal(
    f,
    "5\ncd '/' 2>/dev/null || { printf C; exit 125; }\nexport A='x'\n" +
      "command -v 'ls' >/dev/null 2>&1 || { printf N; exit 127; }\nprintf X\nexec 'ls' '-l' <&4 >&5 4<&- 5>&-\n",
  );
  assert.match(text(jobFrame({ kind: "command", argv: ["ls"], env: {}, cwd: "/" }, false)), /exec 'ls' <\/dev\/null >&5 4<&- 5>&-\n$/);
});

test("job: OPTIND goes through env(1), which dash would refuse as non-numeric", () => {
  const f = text(jobFrame({ kind: "command", argv: ["true"], env: { OPTIND: "x" }, cwd: "/" }, true));
  assert.match(f, /exec \/\.mvm\/env 'OPTIND=x' 'true'/);
  assert.doesNotMatch(f, /export OPTIND/);
});

test("job: an env name that is not an identifier is refused", () => {
  assert.throws(() => jobFrame({ kind: "command", argv: ["true"], env: { "A;rm": "x" }, cwd: "/" }, true), TypeError);
});

test("job: an agent job moves the slot's fifos into place, then names its nonce and op as words", () => {
  const f = text(jobFrame({ kind: "agent", op: "stat", args: ["/a b"], nonce: "ab12" }, false));
  assert.equal(f, "2\nexec </dev/null >&5 4<&- 5>&-\nMVM_NONCE='ab12'; mvm_agent 'stat' '/a b'\n");
});

test("bytes: valid UTF-8 names decode as themselves", () => {
  assert.equal(decodeName(new TextEncoder().encode("héllo ✓")), "héllo ✓");
});

test("bytes: each invalid byte becomes U+DC00+byte and encodes back to the same bytes", () => {
  const raw = new Uint8Array([0x61, 0xff, 0xfe, 0x62, 0xc3]);
  const name = decodeName(raw);
  assert.equal(name, "a\udcff\udcfeb\udcc3");
  assert.deepEqual(encodeName(name), raw);
});

test("bytes: a valid sequence next to invalid bytes survives the round trip", () => {
  const raw = new Uint8Array([0xe2, 0x9c, 0x93, 0x80, 0x41]);
  assert.deepEqual(encodeName(decodeName(raw)), raw);
});

test("bytes: astral characters encode as UTF-8", () => {
  assert.deepEqual(encodeName("😀"), new TextEncoder().encode("😀"));
});

test("bwrap: /bin and /lib* become read-only mounts of their targets, not symlinks", () => {
  const { args } = bwrapArgv(input);
  const s = args.join(" ");
  assert.match(s, /--ro-bind \/usr\/bin \/bin/);
  assert.match(s, /--ro-bind \/usr\/lib64 \/lib64/);
  assert.match(s, /--ro-bind \/sbin \/sbin/);
  assert.ok(!args.includes("--symlink"));
});

test("bwrap: the helpers are read-only at /.mvm and the init is their execute-only shell as pid 1", () => {
  const { argv, args } = bwrapArgv(input);
  assert.match(args.join(" "), /--ro-bind \/h \/\.mvm/);
  assert.ok(args.includes("--as-pid-1"));
  assert.deepEqual(argv.slice(-3), ["/.mvm/sh", "-c", INIT_SH]);
});

test("bwrap: the command line shows no host state path; the arguments travel on fd 6", () => {
  const { argv, args } = bwrapArgv(input);
  assert.deepEqual(argv.slice(0, 3), ["/h/bwrap", "--args", "6"]);
  assert.ok(!argv.join(" ").includes("/s/"));
  assert.ok(args.includes("/s/sbx-000000000000/root"));
});

test("bwrap: as root it runs as the sandbox's uid and cannot nest user namespaces", () => {
  const { argv, args } = bwrapArgv({ ...input, asUid: { setpriv: "/usr/bin/setpriv", uid: 2000000001 } });
  assert.deepEqual(argv.slice(0, 2), ["/usr/bin/setpriv", "--reuid=2000000001"]);
  assert.ok(args.includes("--disable-userns"));
  assert.ok(!bwrapArgv(input).args.includes("--disable-userns"));
});

test("agent errors: the errno text decides, not a guest-chosen name in the message", () => {
  assert.equal(classifyErrno("rmdir: failed to remove 'No such file or directory': Directory not empty"), "CONFLICT");
  assert.equal(classifyErrno("mkdir: cannot create directory 'Permission denied': File exists"), "CONFLICT");
  assert.equal(classifyErrno("cat: x: No such file or directory"), "NOT_FOUND");
  assert.equal(classifyErrno("something odd"), "INTERNAL");
});

test("agent errors: the agent's own code wins, and the class matches it", () => {
  assert.ok(agentError("mvm-error NOT_FOUND No such file or directory", "read", "/x") instanceof NotFoundError);
  assert.ok(agentError("mvm-error ? rm: cannot remove 'a': Directory not empty", "remove", "/a") instanceof ConflictError);
});

test("files: relative paths resolve against /", () => {
  assert.equal(absolute("app/x"), "/app/x");
  assert.equal(absolute("/app"), "/app");
});

test("files: info records parse, with tabs and non-UTF-8 bytes in the name", () => {
  const enc = new TextEncoder();
  const rec = new Uint8Array([...enc.encode("f\t3\t644\t1700000000.5\t/app/a\tb"), 0xff, 0, ...enc.encode("d\t4096\t755\t1\t/app/d\0")]);
  const [a, d] = parseInfos(rec);
  assert.deepEqual([a.path, a.name, a.type, a.size, a.mode], ["/app/a\tb\udcff", "a\tb\udcff", "file", 3, 0o644]);
  assert.equal(a.mtime, new Date(1700000000500).toISOString());
  assert.deepEqual([d.type, d.name], ["dir", "d"]);
});

test("state: cgroup tags differ per state root and are stable", () => {
  assert.equal(rootTag("/a/sandboxes"), rootTag("/a/sandboxes"));
  assert.notEqual(rootTag("/a/sandboxes"), rootTag("/b/sandboxes"));
  assert.match(rootTag("/a"), /^r[0-9a-f]{10}$/);
});

test("local units: every program a runner's entry execs inside the sandbox is an execute-only /.mvm tool", () => {
  // a readable program run there as the guest's uid is dumpable until it execs the next one: guest code
  // could trace it or open its descriptors (the job slots' folder among them) in that window
  const tools = {
    bwrap: "/usr/bin/bwrap",
    nsenter: "/usr/bin/nsenter",
    setsid: "/usr/bin/setsid",
    setpriv: "/usr/bin/setpriv",
    perl: "/usr/bin/perl",
    keyctl: 250,
    prctl: 157,
    mknodat: 259,
    uid: 0,
    root: "/s/sandboxes",
    tag: "t",
    helpers: "/h",
    hostRoot: [],
    layout: null,
  };
  for (const session of [false, true]) {
    const argv = runnerArgv(tools, "sbx-000000000000", 42, session);
    const inside = argv.slice(argv.indexOf("--") + 1);
    assert.equal(inside[0], "/.mvm/setpriv");
    const next = inside.slice(inside.indexOf("--") + 1);
    for (const p of next.filter((a) => a.startsWith("/") && !a.includes("\n")).slice(0, session ? 2 : 1)) {
      assert.ok(p.startsWith("/.mvm/"), `${p} is run inside the sandbox but is not an execute-only tool`);
    }
  }
});
