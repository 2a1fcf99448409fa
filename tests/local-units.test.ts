/**
 * Unit tests of the local engine's pure helpers (no root, no sandbox): job framing, file names as
 * bytes, the bubblewrap command line, error classification and file-info parsing.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { agentError, classifyErrno } from "../src/engines/local/agent.ts";
import { bwrapArgv, INIT_SH } from "../src/engines/local/bwrap.ts";
import { decodeName, encodeName } from "../src/filenames.ts";
import { absolute, parseInfos } from "../src/engines/local/files.ts";
import { jobFrame } from "../src/engines/local/job.ts";
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

test("job: the frame is the payload's length, a newline, then NUL-separated fields", () => {
  const f = jobFrame({ kind: "command", argv: ["echo", "a\nb\nc"], env: { A: "1\n2" }, cwd: "/app" }, true);
  const t = text(f);
  const nl = t.indexOf("\n");
  assert.equal(Number(t.slice(0, nl)), f.length - nl - 1);
  assert.deepEqual(t.slice(nl + 1).split("\0"), ["c", "1", "/app", "1", "A=1\n2", "2", "echo", "a\nb\nc", "0"]);
});

test("job: a command's fields keep quotes, $, backslashes, OPTIND and non-UTF-8 bytes as they are; no stdin is 0", () => {
  const f = text(jobFrame({ kind: "command", argv: ["ls", "it's $X \\ `x`"], env: { OPTIND: "x" }, cwd: "/" }, false));
  assert.equal(f.slice(f.indexOf("\n") + 1), "c\x000\x00/\x001\x00OPTIND=x\x002\x00ls\x00it's $X \\ `x`\x000");
  const raw = jobFrame({ kind: "command", argv: ["cat", "a\udcff"], env: {}, cwd: "/" }, false);
  assert.deepEqual([...raw.subarray(raw.length - 5)], [0x00, 0x61, 0xff, 0x00, 0x30]);
});

test("job: a command through a helper (via) carries it after argv", () => {
  const f = text(jobFrame({ kind: "command", argv: ["sh"], env: {}, cwd: "/", via: ["/.mvm/env", "-i"] }, true));
  assert.ok(f.endsWith("\x001\x00sh\x002\x00/.mvm/env\x00-i"), JSON.stringify(f));
});

test("job: an env name that is not an identifier, or a field with a NUL, is refused", () => {
  assert.throws(() => jobFrame({ kind: "command", argv: ["true"], env: { "A;rm": "x" }, cwd: "/" }, true), TypeError);
  assert.throws(() => jobFrame({ kind: "command", argv: ["a\0b"], env: {}, cwd: "/" }, true), TypeError);
});

test("job: an agent job names its stdin, nonce, op and arguments", () => {
  const f = text(jobFrame({ kind: "agent", op: "stat", args: ["/a b"], nonce: "ab12" }, false));
  assert.equal(f, "18\na\x000\x00ab12\x00stat\x00/a b");
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
