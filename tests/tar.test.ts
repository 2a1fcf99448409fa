/** The tar writer `files.upload` streams: GNU tar reads back what it wrote (long and non-ASCII names, links, sizes, modes). */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { Writable } from "node:stream";
import { hostTar, Tally } from "../src/transfer.ts";
import { pad, tarHeader } from "../src/tar.ts";

test("tar: a header is one block with a valid checksum; long or non-ASCII names get a pax header first", () => {
  const h = tarHeader({ name: "a.txt", type: "file", size: 3, mode: 0o644, mtime: 0 });
  assert.equal(h.length, 512);
  const sum = h.reduce((n, b, i) => n + (i >= 148 && i < 156 ? 0x20 : b), 0);
  assert.equal(parseInt(new TextDecoder().decode(h.subarray(148, 154)), 8), sum);
  assert.equal(tarHeader({ name: "x".repeat(101), type: "file", size: 0, mode: 0o644, mtime: 0 }).length, 512 * 3);
  assert.equal(tarHeader({ name: "é", type: "file", size: 0, mode: 0o644, mtime: 0 })[156], "x".charCodeAt(0));
  assert.deepEqual([pad(0), pad(1), pad(512), pad(513)], [0, 511, 0, 511]);
});

test("tar: GNU tar extracts a host folder's stream as it was, twice over the same place", async () => {
  const src = mkdtempSync(`${tmpdir()}/mvm-tar-`);
  const out = mkdtempSync(`${tmpdir()}/mvm-tar-out-`);
  try {
    const long = "d".repeat(120);
    mkdirSync(`${src}/${long}/sub`, { recursive: true });
    writeFileSync(`${src}/${long}/sub/${"f".repeat(150)}.txt`, "long");
    writeFileSync(`${src}/héllo.txt`, "unicode");
    writeFileSync(`${src}/empty`, "");
    writeFileSync(`${src}/x.sh`, "#!/bin/sh\n", { mode: 0o755 });
    writeFileSync(`${src}/big`, new Uint8Array(1_000_001).fill(9));
    symlinkSync("x.sh", `${src}/link`);
    symlinkSync("/" + "l".repeat(150), `${src}/longlink`);
    for (let i = 0; i < 2; i++) {
      const t = new Tally(undefined);
      const x = spawn("tar", ["-x", "-f", "-", "-C", out, "--no-same-owner"], { stdio: ["pipe", "ignore", "inherit"] });
      const done = new Promise((r) => x.on("exit", r));
      await hostTar(src, t).pipeTo(Writable.toWeb(x.stdin!) as WritableStream<Uint8Array>);
      assert.equal(await done, 0);
      assert.deepEqual(t.result, { files: 5, dirs: 2, symlinks: 2, bytes: 1_000_022, skipped: [] });
    }
    assert.equal(execFileSync("diff", ["-r", "--no-dereference", src, out]).toString(), "");
    assert.equal(readlinkSync(`${out}/longlink`), "/" + "l".repeat(150));
    assert.equal(statSync(`${out}/x.sh`).mode & 0o777, 0o755);
    assert.equal(readFileSync(`${out}/héllo.txt`, "utf8"), "unicode");
  } finally {
    rmSync(src, { recursive: true, force: true });
    rmSync(out, { recursive: true, force: true });
  }
});
