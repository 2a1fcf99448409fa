/**
 * The file verbs beyond read/write: chmod, copy, symlink, realpath inside a sandbox, and upload /
 * download between host folders and a sandbox, with the sandbox's symlinks treated as hostile.
 * One sandbox per test, shared by its assertions.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import {
  ConflictError,
  InvalidInputError,
  IsADirectoryError,
  NotFoundError,
  PermissionDeniedError,
  Sandbox,
  type TransferProgress,
  TransportError,
} from "../mod.ts";
import { download } from "../src/transfer.ts";
import { TAR_END, tarHeader } from "../src/tar.ts";

test("files: chmod, copy, symlink and realpath inside the sandbox, with typed errors and audit ids", async () => {
  await using sb = await Sandbox.create();
  await sb.files.write("/app/run.sh", "#!/bin/sh\necho ran\n");
  const m = await sb.files.chmod("/app/run.sh", 0o755);
  assert.equal(m.mode, 0o755);
  assert.match(m.auditId, /^aud_/);
  assert.equal((await sb.commands.run(["/app/run.sh"])).stdout, "ran\n");
  await assert.rejects(sb.files.chmod("/usr/bin/env", 0o777), PermissionDeniedError);
  await assert.rejects(sb.files.chmod("/app/missing", 0o644), NotFoundError);
  await assert.rejects(sb.files.chmod("/app/run.sh", 0o10000), InvalidInputError);

  // symlink and realpath
  const l = await sb.files.symlink("run.sh", "/app/link");
  assert.equal(l.type, "symlink");
  assert.match(l.auditId, /^aud_/);
  assert.equal(await sb.files.realpath("/app/link"), "/app/run.sh");
  assert.equal(await sb.files.realpath("/app/./link"), "/app/run.sh");
  await assert.rejects(sb.files.symlink("x", "/app/link"), ConflictError);
  await sb.files.symlink("/nowhere", "/app/dangling");
  await assert.rejects(sb.files.realpath("/app/dangling"), NotFoundError);
  await assert.rejects(sb.files.symlink("x", "/usr/bin/evil-link"), PermissionDeniedError);

  // copy: a file, a tree (its symlink copied as a symlink), refusals
  await sb.files.write("/app/src/a.txt", "a");
  await sb.files.symlink("a.txt", "/app/src/alias");
  const c = await sb.files.copy("/app/run.sh", "/app/run2.sh");
  assert.equal(c.mode, 0o755);
  assert.match(c.auditId, /^aud_/);
  assert.equal(await sb.files.readText("/app/run2.sh"), "#!/bin/sh\necho ran\n");
  await assert.rejects(sb.files.copy("/app/src", "/app/dst"), IsADirectoryError);
  const tree = await sb.files.copy("/app/src", "/app/dst", { recursive: true });
  assert.equal(tree.type, "dir");
  assert.equal((await sb.files.stat("/app/dst/alias")).type, "symlink");
  assert.equal(await sb.files.readText("/app/dst/alias"), "a");
  await assert.rejects(sb.files.copy("/app/run.sh", "/app/run2.sh"), ConflictError);
  await sb.files.write("/app/other", "other");
  await sb.files.copy("/app/other", "/app/run2.sh", { overwrite: true });
  assert.equal(await sb.files.readText("/app/run2.sh"), "other");
  await assert.rejects(sb.files.copy("/app/src", "/app/src/inner", { recursive: true }), InvalidInputError);
  await assert.rejects(sb.files.copy("/app/missing", "/app/x"), NotFoundError);
  await assert.rejects(sb.files.copy("/app/other", "/usr/bin/other"), PermissionDeniedError);
});

test("files: upload and download a folder tree with progress; a second download refuses to overwrite unless asked", async () => {
  const host = mkdtempSync(`${tmpdir()}/mvm-up-`);
  try {
    mkdirSync(`${host}/src/deep`, { recursive: true });
    writeFileSync(`${host}/src/main.py`, "print('hi')\n");
    writeFileSync(`${host}/src/deep/big.bin`, new Uint8Array(3 << 20).fill(7));
    writeFileSync(`${host}/src/run.sh`, "echo x\n", { mode: 0o755 });
    symlinkSync("main.py", `${host}/src/entry.py`);
    execFileSync("mkfifo", [`${host}/src/pipe`]);
    await using sb = await Sandbox.create();
    const seen: TransferProgress[] = [];
    const up = await sb.files.upload(`${host}/src`, "/app/proj", { onProgress: (p) => seen.push(p) });
    assert.deepEqual({ ...up, skipped: up.skipped.map((s) => s.path) }, {
      files: 3,
      dirs: 1,
      symlinks: 1,
      bytes: (3 << 20) + 12 + 7,
      skipped: [`${host}/src/pipe`],
    });
    assert.deepEqual(seen.at(-1), { bytes: up.bytes, files: 3 });
    assert.ok(seen.length >= 3, `progress was reported ${seen.length} times`);
    assert.equal(await sb.files.readText("/app/proj/main.py"), "print('hi')\n");
    assert.equal((await sb.files.stat("/app/proj/run.sh")).mode, 0o755);
    assert.equal((await sb.files.stat("/app/proj/entry.py")).type, "symlink");
    assert.equal((await sb.files.stat("/app/proj/deep/big.bin")).size, 3 << 20);
    // a second upload replaces what is there (files and symlinks alike)
    writeFileSync(`${host}/src/main.py`, "print('again')\n");
    await sb.files.upload(`${host}/src`, "/app/proj");
    assert.equal(await sb.files.readText("/app/proj/entry.py"), "print('again')\n");
    writeFileSync(`${host}/src/main.py`, "print('hi')\n");
    await sb.files.upload(`${host}/src`, "/app/proj");
    // a single file lands under its own name
    await sb.files.upload(`${host}/src/main.py`, "/app/one");
    assert.equal(await sb.files.readText("/app/one/main.py"), "print('hi')\n");

    const out = `${host}/out`;
    const down = await sb.files.download("/app/proj", out);
    assert.deepEqual([down.files, down.dirs, down.symlinks, down.bytes, down.skipped], [3, 1, 1, up.bytes, []]);
    assert.deepEqual(readdirSync(out).sort(), ["deep", "entry.py", "main.py", "run.sh"]);
    assert.equal(readFileSync(`${out}/entry.py`, "utf8"), "print('hi')\n");
    assert.equal(readlinkSync(`${out}/entry.py`), "main.py");
    assert.equal(statSync(`${out}/run.sh`).mode & 0o777, 0o755);
    assert.equal(statSync(`${out}/deep/big.bin`).size, 3 << 20);
    await assert.rejects(sb.files.download("/app/proj", out), ConflictError);
    await sb.files.write("/app/proj/main.py", "print('new')\n");
    await sb.files.download("/app/proj", out, { overwrite: true });
    assert.equal(readFileSync(`${out}/main.py`, "utf8"), "print('new')\n");
    await assert.rejects(sb.files.download("/app/missing", out), NotFoundError);
    await assert.rejects(sb.files.upload(`${host}/missing`, "/app/x"), NotFoundError);
  } finally {
    rmSync(host, { recursive: true, force: true });
  }
});

test("files: a hostile download: guest symlinks out of the folder are skipped, never followed; host symlinks in the way are replaced, never written through", async () => {
  const host = mkdtempSync(`${tmpdir()}/mvm-down-`);
  try {
    const outside = `${host}/outside`;
    mkdirSync(outside);
    writeFileSync(`${outside}/secret`, "host secret");
    await using sb = await Sandbox.create();
    // what a guest can leave behind: links to host-looking absolute paths, links up and out, a link
    // that only becomes dangerous through another one, a fifo, and names set to collide with host traps
    await sb.commands.run([
      "sh",
      "-c",
      [
        "mkdir -p /app/evil/sub && cd /app/evil",
        "ln -s /etc/passwd abs && ln -s ../../.. up && ln -s . self && ln -s self/../.. chained && ln -s sub/f ok",
        "echo guest > sub/f && mkfifo fifo && echo trapped > trap && mkdir trapdir && echo in > trapdir/x",
        "printf 'x' > \"$(printf 'bad\\377name')\"",
      ].join(" && "),
    ], { check: true });
    const out = `${host}/out`;
    mkdirSync(out);
    symlinkSync(`${outside}/secret`, `${out}/trap`); // a host symlink where the guest has a file
    symlinkSync(outside, `${out}/trapdir`); // and one where the guest has a folder
    await assert.rejects(sb.files.download("/app/evil", out), ConflictError);
    const r = await sb.files.download("/app/evil", out, { overwrite: true });
    assert.deepEqual(r.skipped.map((s) => s.path).sort(), [
      "/app/evil/abs",
      "/app/evil/bad\udcffname",
      "/app/evil/chained",
      "/app/evil/fifo",
      "/app/evil/up",
    ]);
    // nothing outside the download changed, and nothing in it leads out
    assert.equal(readFileSync(`${outside}/secret`, "utf8"), "host secret");
    assert.deepEqual(readdirSync(outside), ["secret"]);
    assert.equal(lstatSync(`${out}/trap`).isFile(), true);
    assert.equal(readFileSync(`${out}/trap`, "utf8"), "trapped\n");
    assert.equal(lstatSync(`${out}/trapdir`).isDirectory(), true);
    assert.equal(readFileSync(`${out}/trapdir/x`, "utf8"), "in\n");
    assert.equal(readlinkSync(`${out}/ok`), "sub/f");
    assert.equal(readFileSync(`${out}/ok`, "utf8"), "guest\n");
    assert.equal(readlinkSync(`${out}/self`), ".");
    assert.equal(existsSync(`${out}/abs`) || existsSync(`${out}/up`) || existsSync(`${out}/chained`), false);
  } finally {
    rmSync(host, { recursive: true, force: true });
  }
});

// A tar stream as a guest that traced the sandbox's packing `tar` could send it instead of the real one.
function forged(entries: Array<{ name: string | Uint8Array; type: string; data?: string; link?: string }>, end = true): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const e of entries) {
    const data = new TextEncoder().encode(e.data ?? "");
    const h = tarHeader({ name: "x", type: "file", size: data.length, mode: 0o644, mtime: 0, linkname: e.link ?? "" });
    const name = typeof e.name === "string" ? new TextEncoder().encode(e.name) : e.name;
    h.fill(0, 0, 100);
    h.set(name, 0);
    h[156] = e.type.charCodeAt(0);
    h.fill(0x20, 148, 156);
    const sum = h.reduce((a, b) => a + b, 0);
    h.set(new TextEncoder().encode(sum.toString(8).padStart(6, "0") + "\0 "), 148);
    parts.push(h, data, new Uint8Array((512 - (data.length % 512)) % 512));
  }
  if (end) parts.push(TAR_END);
  return new Uint8Array(parts.flatMap((p) => [...p]));
}

test("files: a download of a folder with entries the guest made unreadable fails as incomplete, never reports a whole copy", async () => {
  await using sb = await Sandbox.create();
  await sb.commands.run([
    "sh",
    "-c",
    "mkdir -p /app/d/sub && echo a > /app/d/a && echo b > /app/d/b && echo c > /app/d/sub/c && chmod 000 /app/d/b /app/d/sub",
  ], {
    check: true,
  });
  const out = mkdtempSync(`${tmpdir()}/mvm-unreadable-`);
  try {
    await assert.rejects(
      sb.files.download("/app/d", out),
      (e: Error) => e instanceof TransportError && /could not read every entry/.test(e.message) && /incomplete/.test(e.message),
    );
    // what it could read was written; the readable rest downloads whole
    assert.equal(readFileSync(`${out}/a`, "utf8"), "a\n");
    await sb.commands.run(["chmod", "755", "/app/d/sub"], { check: true });
    await sb.commands.run(["chmod", "644", "/app/d/b"], { check: true });
    const r = await sb.files.download("/app/d", `${out}/again`);
    assert.deepEqual([r.files, readFileSync(`${out}/again/sub/c`, "utf8")], [3, "c\n"]);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test("files: a file of any size the guest presents is bounded: read's maxBytes (default 1 GiB) and download's maxBytes", async () => {
  await using sb = await Sandbox.create();
  await sb.commands.run(["sh", "-c", "mkdir -p /app/huge && truncate -s 2G /app/huge/sparse && echo small > /app/huge/a"], { check: true });
  const tooBig = (e: Error & { details?: Record<string, unknown> }) =>
    e instanceof InvalidInputError && e.details?.field === "maxBytes" && /maxBytes/.test(e.message);
  await assert.rejects(sb.files.read("/app/huge/sparse", { maxBytes: 1 << 20 }), tooBig);
  await assert.rejects(sb.files.readText("/app/huge/sparse", { maxBytes: 1 << 20 }), tooBig);
  assert.equal(await sb.files.readText("/app/huge/a", { maxBytes: 6 }), "small\n");
  await assert.rejects(sb.files.read("/app/huge/a", { maxBytes: 0 }), InvalidInputError);
  const out = mkdtempSync(`${tmpdir()}/mvm-huge-`);
  try {
    await assert.rejects(sb.files.download("/app/huge", out, { maxBytes: 8 << 20 }), tooBig);
    // the file in flight is gone; nothing near its size is left on the host
    const left = readdirSync(out).map((n) => statSync(`${out}/${n}`).size);
    assert.ok(left.every((n) => n < 1 << 20), JSON.stringify(readdirSync(out)));
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
  // the sandbox goes on: its helpers were ended
  assert.equal(await sb.files.readText("/app/huge/a"), "small\n");
});

test("files: a download unpacks the sandbox's tar stream itself and refuses what a forged one asks for", async () => {
  const host = mkdtempSync(`${tmpdir()}/mvm-forged-`);
  try {
    await using sb = await Sandbox.create();
    await sb.files.mkdir("/app/d");
    const via = (bytes: Uint8Array) => ({
      stat: (p: string) => sb.files.stat(p),
      readTar: () => Promise.resolve(new ReadableStream<Uint8Array>({ start: (c) => (c.enqueue(bytes), c.close()) })),
    } as unknown as Parameters<typeof download>[0]);
    const out = `${host}/out`;
    mkdirSync(out);
    mkdirSync(`${host}/victim`);
    symlinkSync(`${host}/victim`, `${out}/cfg`); // the host's own symlink in the target folder
    const r = await download(
      via(forged([
        { name: "./", type: "5" },
        { name: "./../escape", type: "0", data: "x" },
        { name: "abs", type: "2", link: "/etc" },
        { name: "abs/passwd", type: "0", data: "owned" },
        { name: "sub/", type: "5" },
        { name: "in", type: "2", link: "sub" },
        { name: "in/x", type: "0", data: "through a link" },
        { name: "f", type: "0", data: "first" },
        { name: "f", type: "0", data: "second" },
        { name: "h", type: "1", link: "f" },
        { name: "h2", type: "1", link: "../../etc/passwd" },
        { name: "fifo", type: "6" },
        { name: new Uint8Array([0x62, 0xff]), type: "0", data: "x" },
        { name: "sub/ok", type: "0", data: "fine" },
        { name: "leak", type: "2", link: "cfg/file" },
        { name: "l1", type: "2", link: "l2" },
        { name: "l2", type: "2", link: "sub/ok" },
        { name: "dangling", type: "2", link: "nowhere" },
        { name: "n".repeat(99), type: "0", data: "a long name is fine" },
      ])),
      "/app/d",
      out,
      {},
    );
    assert.deepEqual(r.skipped.map((s) => s.path), [
      "/app/d/../escape",
      "/app/d/abs",
      "/app/d/abs/passwd",
      "/app/d/in/x",
      "/app/d/f",
      "/app/d/h2",
      "/app/d/fifo",
      "/app/d/b\udcff",
      "/app/d/leak",
      "/app/d/dangling",
    ]);
    assert.deepEqual([r.files, r.dirs, r.symlinks], [4, 1, 3]);
    assert.deepEqual(readdirSync(host).sort(), ["out", "victim"]);
    assert.deepEqual(readdirSync(`${host}/victim`), []);
    assert.deepEqual(readdirSync(out).sort(), ["cfg", "f", "h", "in", "l1", "l2", "n".repeat(99), "sub"]);
    assert.equal(readFileSync(`${out}/l1`, "utf8"), "fine");
    assert.equal(statSync(`${out}/h`).ino, statSync(`${out}/f`).ino, "a hard link of the stream is a hard link here");
    assert.equal(readFileSync(`${out}/f`, "utf8"), "first");
    assert.equal(readFileSync(`${out}/h`, "utf8"), "first");
    assert.deepEqual(readdirSync(`${out}/sub`), ["ok"]);
    // a damaged header, a stream cut inside a file, an oversized record: a TransportError, no half file
    for (
      const [name, bytes] of [
        [
          "checksum",
          (() => {
            const b = forged([{ name: "c", type: "0", data: "c" }]);
            b[0] = 0x64;
            return b;
          })(),
        ],
        ["cut", forged([{ name: "cut", type: "0", data: "y".repeat(4000) }], false).subarray(0, 2048)],
        [
          "record",
          (() => {
            const b = forged([{ name: "PaxHeader", type: "x", data: "" }]);
            b.set(new TextEncoder().encode("00010000000\0"), 124); // 2 MiB claimed
            b.fill(0x20, 148, 156);
            b.set(new TextEncoder().encode(b.subarray(0, 512).reduce((a, v) => a + v, 0).toString(8).padStart(6, "0") + "\0 "), 148);
            return b;
          })(),
        ],
      ] as const
    ) {
      const dir = `${host}/${name}`;
      await assert.rejects(download(via(bytes), "/app/d", dir, {}), TransportError, name);
      assert.deepEqual(readdirSync(dir), [], name);
    }
    // with overwrite, a file stays whole until its replacement is: a cut stream leaves the old one
    writeFileSync(`${out}/cut`, "old");
    const cut = forged([{ name: "cut", type: "0", data: "y".repeat(4000) }], false).subarray(0, 2048);
    await assert.rejects(download(via(cut), "/app/d", out, { overwrite: true }), TransportError);
    assert.equal(readFileSync(`${out}/cut`, "utf8"), "old");
  } finally {
    rmSync(host, { recursive: true, force: true });
  }
});

/**
 * Guest code that stops the SDK's file helpers (by their names in /proc: no procps needed): `stopHelpers` stops
 * those running now; `stopper` starts a command that stops the first it sees, as soon as it sees it; `gone`
 * waits until no helper is left (an ended call's helpers are killed, not left stopped).
 */
function guestStopper(sb: Sandbox, names = "dd|tar|cat") {
  const scan = (act: string) =>
    `for d in /proc/[0-9]*; do read -r c < "$d/comm" 2>/dev/null || continue; case $c in ${names}) ${act};; esac; done`;
  const helpers = async () => (await sb.commands.run(["sh", "-c", scan('echo "${d#/proc/}"')])).stdout.trim();
  return {
    stopHelpers: () => sb.commands.run(["sh", "-c", scan('kill -STOP "${d#/proc/}"')]),
    stopper: () =>
      sb.commands.start([
        "sh",
        "-c",
        `i=0; while [ $i -lt 100000 ]; do ${scan('kill -STOP "${d#/proc/}" && exit 0')}; i=$((i+1)); done; exit 1`,
      ]),
    stopped: async (s: { status: Promise<{ exitCode: number }> }) =>
      assert.equal((await s.status).exitCode, 0, "the guest stopped a helper"),
    gone: async () => {
      for (let i = 0; i < 50 && (await helpers()) !== ""; i++) await new Promise((ok) => setTimeout(ok, 100));
      assert.equal(await helpers(), "", "a helper outlived its call");
    },
  };
}

test("files: a signal bounds reads, downloads and uploads whose helper guest code stopped (SIGSTOP); the helper is ended, the sandbox goes on", async () => {
  await using sb = await Sandbox.create();
  await sb.commands.run(["sh", "-c", "truncate -s 256M /app/big && mkdir -p /app/tree && cp --sparse=always /app/big /app/tree/"]);
  const { stopHelpers, stopper, stopped, gone } = guestStopper(sb);

  // a stream: its first chunk is read, then the guest stops the helper that writes it (blocked on a full pipe);
  // the abort ends the wait
  const ac = new AbortController();
  const s = await sb.files.readStream("/app/big", { signal: ac.signal });
  const r = s.getReader();
  assert.equal((await r.read()).done, false);
  await stopHelpers();
  const reading = (async () => {
    for (;;) if ((await r.read()).done) return "ended";
  })();
  const why = new Error("the caller gave up");
  setTimeout(() => ac.abort(why), 300);
  await assert.rejects(reading, (e) => e === why);
  await gone();

  // a whole read, a download and an upload, each bounded by a timeout signal, their helper stopped as it starts
  const t0 = Date.now();
  let st = await stopper();
  await assert.rejects(sb.files.read("/app/big", { signal: AbortSignal.timeout(1500) }), (e: Error) => e.name === "TimeoutError");
  await stopped(st);
  await gone();
  const out = mkdtempSync(`${tmpdir()}/mvm-abort-`);
  try {
    st = await stopper();
    await assert.rejects(
      sb.files.download("/app/tree", out, { signal: AbortSignal.timeout(1500) }),
      (e: Error) => e.name === "TimeoutError",
    );
    await stopped(st);
    await gone();
    // no half file: only temporary files are written, and they go
    await new Promise((ok) => setTimeout(ok, 200));
    assert.deepEqual(readdirSync(out, { recursive: true }).filter((f) => String(f).includes("big")), []);
    // an upload of a folder is one tar stream into the sandbox: its tar is stopped, the signal ends it, nothing half-made is left
    mkdirSync(`${out}/up`);
    writeFileSync(`${out}/up/data`, new Uint8Array(64 << 20));
    st = await stopper();
    await assert.rejects(
      sb.files.upload(`${out}/up`, "/app/up", { signal: AbortSignal.timeout(1500) }),
      (e: Error) => e.name === "TimeoutError",
    );
    await stopped(st);
    assert.ok(Date.now() - t0 < 20_000, "the signals ended the waits");
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
  // the sandbox serves reads again
  await gone();
  assert.equal((await new Response(await sb.files.readStream("/app/big", { length: 1024 })).arrayBuffer()).byteLength, 1024);
  assert.equal((await sb.files.stat("/app/big")).size, 256 << 20);
  // an aborted signal is refused before anything starts; a signal that is not one is INVALID_INPUT
  await assert.rejects(sb.files.read("/app/big", { signal: AbortSignal.abort(why) }), (e) => e === why);
  await assert.rejects(sb.files.read("/app/big", { signal: "soon" as unknown as AbortSignal }), InvalidInputError);
});

test("files: without a signal, a call whose helper guest code stopped ends within seconds, a TransportError saying so", async () => {
  await using sb = await Sandbox.create();
  await sb.commands.run(["sh", "-c", "truncate -s 256M /app/big"]);
  const { stopHelpers, stopper, stopped, gone } = guestStopper(sb);
  const byGuest = (e: unknown) => e instanceof TransportError && e.details?.stoppedByGuest === true && /guest code stopped/.test(e.message);
  const t0 = Date.now();
  // a whole read, its helper stopped as it starts
  let st = await stopper();
  await assert.rejects(sb.files.read("/app/big"), byGuest);
  await stopped(st);
  await gone();
  // a stream being read: the helper is stopped after its first chunk; the next reads fail
  const r = (await sb.files.readStream("/app/big")).getReader();
  assert.equal((await r.read()).done, false);
  await stopHelpers();
  await assert.rejects(
    (async () => {
      for (;;) if ((await r.read()).done) return;
    })(),
    byGuest,
  );
  await gone();
  // a stream whose runner (the dd's parent, which reports its status) is stopped: every byte arrives, then the wait
  // for the status ends the same way
  const r2 = (await sb.files.readStream("/app/big")).getReader();
  assert.equal((await r2.read()).done, false);
  await sb.commands.run([
    "sh",
    "-c",
    'for d in /proc/[0-9]*; do read -r c < "$d/comm" 2>/dev/null || continue; [ "$c" = dd ] || continue; ' +
    'while read -r k v _; do [ "$k" = PPid: ] && kill -STOP "$v"; done < "$d/status"; done',
  ]);
  await assert.rejects(
    (async () => {
      for (;;) if ((await r2.read()).done) return;
    })(),
    byGuest,
  );
  await gone();
  // a write: its cat is stopped as it starts; nothing is committed, no temporary file is left
  st = await stopper();
  await assert.rejects(sb.files.write("/app/new", new Uint8Array(32 << 20)), byGuest);
  await stopped(st);
  await gone();
  assert.ok(Date.now() - t0 < 30_000, "each call ended within seconds");
  assert.deepEqual((await sb.files.list("/app")).map((e) => e.name).sort(), ["big"]);
  // the sandbox serves reads again
  assert.equal((await new Response(await sb.files.readStream("/app/big", { length: 1024 })).arrayBuffer()).byteLength, 1024);
});
