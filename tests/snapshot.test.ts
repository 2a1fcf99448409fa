// Sealed snapshots, restores and forks on the local engine, against real sandboxes: a fork of a sandbox holding
// 100 MB whose sides change independently, each tamper case refused with INTEGRITY (and accepted with
// verify: false), retention, Snapshot.list/get/delete, the snapshot files' modes, and that owner death and TTL
// still clean up a forked sandbox: no folder, no process, nothing mounted anywhere.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import process from "node:process";
import { cpSync, existsSync, lstatSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import {
  ConflictError,
  IntegrityError,
  InvalidInputError,
  NotFoundError,
  Sandbox,
  Snapshot,
  type SnapshotInfo,
  UnsupportedError,
} from "../mod.ts";
import { type AuditEntry, readAudit } from "../src/audit.ts";
import { runtime } from "../src/runtime/mod.ts";
import { collect, cowFork, firstLine, processAlive, runtimeCommand, sandboxPids, STATE, waitFor, withCowStateRoot } from "./helpers.ts";

const FIX = new URL("./fixtures/", import.meta.url).pathname;
const BASE = STATE.replace(/\/sandboxes$/, "");
const SNAPS = `${BASE}/snapshots`;
const sha = (s: string | Uint8Array) => createHash("sha256").update(s).digest("hex");
const mode = (p: string) => lstatSync(p).mode & 0o777;
const isRoot = process.getuid?.() === 0;

/** Every mount of any process that names this sandbox's folder (the overlay lives in a private namespace, so look everywhere). */
function mountsOf(id: string): string[] {
  const out: string[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      for (const l of readFileSync(`/proc/${d}/mountinfo`, "utf8").split("\n")) if (l.includes(`${STATE}/${id}/`)) out.push(`${d}: ${l}`);
    } catch { /* gone */ }
  }
  return out;
}

/** Whether anything of a sandbox is left: its folder, its supervisor or init, a mount naming it. */
function remains(id: string): () => boolean {
  const { reaper, supervisor } = sandboxPids(`${STATE}/${id}`);
  return () => existsSync(`${STATE}/${id}`) || processAlive(reaper) || processAlive(supervisor) || mountsOf(id).length > 0;
}

/** Whatever a failed test left: snapshots of sandboxes this file made (tampered ones too), removed at the end. */
const mine = new Set<string>();
after(() => {
  for (const id of existsSync(SNAPS) ? readdirSync(SNAPS) : []) {
    try {
      if (mine.has(JSON.parse(readFileSync(`${SNAPS}/${id}/meta.json`, "utf8")).sandboxId)) {
        rmSync(`${SNAPS}/${id}`, { recursive: true, force: true });
        rmSync(`${SNAPS}/ledger/${id}`, { force: true });
      }
    } catch { /* not a snapshot */ }
  }
});

async function audit(): Promise<AuditEntry[]> {
  return await collect(readAudit(`${BASE}/audit`));
}

test("snapshot: a fork of a sandbox holding 100 MB; both sides change independently and the snapshot stays intact", async () => {
  await using sb = await Sandbox.create();
  mine.add(sb.id);
  await sb.commands.run(["sh", "-c", "head -c 100M /dev/urandom > /app/big && echo parent > /app/n.txt"], { check: true });
  const bigSum = (await sb.commands.run(["sha256sum", "/app/big"])).stdout.split(" ")[0]!;
  await using child = await sb.fork();
  mine.add(child.id);
  const from = child.restoredFrom!;
  assert.equal(from.verified, true);
  assert.equal(from.rehashed, false, "a fork reuses the digests its snapshot just computed");
  assert.equal(from.restore, isRoot ? "overlay" : "copy");
  assert.deepEqual((await child.info()).restoredFrom, from);
  // on this (non copy-on-write) state root a fork is snapshot + restore, and says so; the chain names both sides
  const forked = child.forkedFrom!;
  assert.deepEqual({ ...forked, auditId: "" }, {
    parentId: sb.id,
    method: "snapshot",
    snapshotId: from.snapshotId,
    skipped: [],
    auditId: "",
  });
  assert.deepEqual((await child.info()).forkedFrom, forked);
  assert.ok((await audit()).some((e) => e.id === forked.auditId && e.event === "sandbox.forked" && e.labels.sandbox === sb.id));
  const snap = await Snapshot.get(from.snapshotId);
  assert.equal(snap.sandboxId, sb.id);
  assert.equal(snap.class, "fs_quick");
  assert.equal(snap.sealed, true);
  assert.ok(snap.sizeBytes >= 100 * 1024 * 1024);
  assert.equal(snap.digests.content.find((c) => c.name === "app/big")?.sha256, bigSum);
  assert.equal(snap.digests.content.find((c) => c.name === "app/n.txt")?.sha256, sha("parent\n"));

  // both sides change independently
  await child.commands.run(["sh", "-c", "echo child > /app/n.txt && echo more >> /app/big && rm -f /app/gone; touch /app/new"], {
    check: true,
  });
  await sb.files.write("/app/n.txt", "parent2\n");
  assert.equal(await child.files.readText("/app/n.txt"), "child\n");
  assert.equal(await sb.files.readText("/app/n.txt"), "parent2\n");
  assert.equal((await sb.commands.run(["sha256sum", "/app/big"])).stdout.split(" ")[0], bigSum);
  assert.notEqual((await child.commands.run(["sha256sum", "/app/big"])).stdout.split(" ")[0], bigSum);
  assert.equal(await sb.files.exists("/app/new"), false);

  // the fork's writes never reached the snapshot: a verified restore (every file hashed) has the original
  {
    await using again = await Sandbox.create({ snapshot: snap });
    assert.equal(again.restoredFrom?.verified, true);
    assert.equal(again.restoredFrom?.rehashed, true);
    assert.equal(await again.files.readText("/app/n.txt"), "parent\n");
  }
  // stop and start remount the fork's overlay in a fresh jail; a snapshot of the stopped fork (read through that
  // overlay) names its parent and holds the fork's files
  await child.stop();
  assert.equal(await child.files.readText("/app/n.txt"), "child\n");
  const s2 = await child.snapshot({ retention: 60 });
  await child.start();
  assert.equal((await child.commands.run(["cat", "/app/n.txt"])).stdout, "child\n");
  assert.equal(s2.parent, snap.id);
  assert.equal(s2.digests.content.find((c) => c.name === "app/n.txt")?.sha256, sha("child\n"));
  assert.ok(s2.digests.content.some((c) => c.name === "app/new"));

  // modes: folders 0700, the seal's files and the key 0600, all the engine's
  for (const d of [SNAPS, `${SNAPS}/ledger`, `${SNAPS}/${snap.id}`]) assert.equal(mode(d), 0o700, d);
  for (const f of ["key", "epoch", `ledger/${snap.id}`, `${snap.id}/meta.json`, `${snap.id}/manifest.json`, `${snap.id}/integrity.json`]) {
    assert.equal(mode(`${SNAPS}/${f}`), 0o600, f);
    assert.equal(statSync(`${SNAPS}/${f}`).uid, process.getuid?.());
  }
  assert.equal(statSync(`${SNAPS}/key`).size, 32);
  // nothing of a restore is mounted where this process (the host) sees it
  assert.deepEqual(readFileSync("/proc/self/mountinfo", "utf8").split("\n").filter((l) => l.includes(BASE)), []);
  if (isRoot) await assert.rejects(Snapshot.delete(snap.id), ConflictError, "the lower layer of a live fork cannot be deleted");
  const ids = [child.id];
  await child.destroy();
  assert.deepEqual(ids.flatMap(mountsOf), [], "a destroyed fork left a mount behind");
  assert.equal(existsSync(`${STATE}/${child.id}`), false);
  await Snapshot.delete(snap.id);
  await Snapshot.delete(s2.id);
});

test("snapshot: each tamper case is refused with INTEGRITY and recorded; verify: false restores it and says so", async () => {
  await using sb = await Sandbox.create();
  mine.add(sb.id);
  await sb.files.write("/app/a.txt", "original");
  const snaps: SnapshotInfo[] = [];
  for (let i = 0; i < 4; i++) snaps.push(await sb.snapshot({ name: `tamper-${i}`, retention: 600 }));
  const [byte, added, sidecar, stale] = snaps as [SnapshotInfo, SnapshotInfo, SnapshotInfo, SnapshotInfo];
  writeFileSync(`${SNAPS}/${byte.id}/tree/app/a.txt`, "Original");
  writeFileSync(`${SNAPS}/${added.id}/tree/app/extra`, "x");
  const integrity = JSON.parse(readFileSync(`${SNAPS}/${sidecar.id}/integrity.json`, "utf8"));
  writeFileSync(`${SNAPS}/${sidecar.id}/integrity.json`, JSON.stringify({ ...integrity, epoch: integrity.epoch + 1000 }));
  // an older sealed copy put back in place after the snapshot was deleted
  cpSync(`${SNAPS}/${stale.id}`, `${SNAPS}/.keep-${stale.id}`, { recursive: true, preserveTimestamps: true });
  await Snapshot.delete(stale.id);
  renameSync(`${SNAPS}/.keep-${stale.id}`, `${SNAPS}/${stale.id}`);
  await assert.rejects(Snapshot.get(stale.id), IntegrityError);

  const why: Record<string, RegExp> = {
    [byte.id]: /"app\/a\.txt" was changed/,
    [added.id]: /"app\/extra" was added/,
    [sidecar.id]: /seal/,
    [stale.id]: /epoch \d+, which this host retired/,
  };
  for (const s of snaps) {
    await assert.rejects(Sandbox.create({ snapshot: s.id }), (e: unknown) => {
      assert.ok(e instanceof IntegrityError, String(e));
      assert.equal(e.code, "INTEGRITY");
      assert.match(e.message, why[s.id]!);
      return true;
    });
    await using forced = await Sandbox.create({ snapshot: s.id, verify: false });
    assert.equal(forced.restoredFrom?.verified, false);
    assert.equal((await forced.info()).restoredFrom?.verified, false);
    assert.match(await forced.files.readText("/app/a.txt"), /^[oO]riginal$/);
  }
  const entries = await audit();
  for (const s of snaps) {
    assert.ok(entries.some((e) => e.event === "snapshot.rejected" && e.labels.snapshot === s.id), `no snapshot.rejected for ${s.id}`);
    assert.ok(entries.some((e) => e.event === "snapshot.unverified" && e.labels.snapshot === s.id), `no snapshot.unverified for ${s.id}`);
  }
  // the untouched content restores verified; the created entry names it
  const ok = await sb.snapshot({ retention: 600 });
  {
    await using good = await Sandbox.create({ snapshot: ok.id });
    assert.equal(good.restoredFrom?.verified, true);
    assert.ok((await audit()).some((e) => e.id === good.restoredFrom?.auditId && e.event === "snapshot.verified"));
    assert.ok((await collect(good.audit())).some((e) => e.event === "created" && e.data?.snapshot === ok.id));
  }
  for (const s of [...snaps, ok]) await Snapshot.delete(s.id).catch(() => rmSync(`${SNAPS}/${s.id}`, { recursive: true, force: true }));
});

test("snapshot: retention, list/get/delete, a paused sandbox stays paused, vm_full and bad input are refused", async () => {
  await using sb = await Sandbox.create();
  mine.add(sb.id);
  await sb.files.write("/app/a.txt", "a");
  const short = await sb.snapshot({ retention: 1 });
  const kept = await sb.snapshot({ name: "keep", retention: "forever" });
  const def = await sb.snapshot();
  assert.equal(kept.expiresAt, null);
  assert.equal(Date.parse(short.expiresAt!) - Date.parse(short.createdAt), 1000);
  assert.equal(Date.parse(def.expiresAt!) - Date.parse(def.createdAt), 7 * 86_400_000);
  assert.equal((await Snapshot.get(kept.id)).name, "keep");
  assert.deepEqual(await Snapshot.get(def.id), def);

  await sb.pause();
  const whilePaused = await sb.snapshot({ retention: 60 });
  assert.equal((await sb.info()).state, "paused", "a paused sandbox stays paused");
  await sb.resume();
  await sb.stop();
  const whileStopped = await sb.snapshot({ retention: 60 });
  assert.ok(whileStopped.digests.content.some((c) => c.name === "app/a.txt"));
  await sb.start();

  await assert.rejects(sb.snapshot({ class: "vm_full" }), (e: unknown) => e instanceof UnsupportedError && /CRIU/.test(e.message));
  for (
    const bad of [
      () => sb.snapshot({ retention: 0 }),
      () => sb.snapshot({ name: "no spaces" }),
      () => Sandbox.create({ snapshot: "nope" }),
      () => Sandbox.create({ verify: false }),
      () => Snapshot.get("snap-x"),
    ]
  ) await assert.rejects(bad(), InvalidInputError);
  await assert.rejects(Sandbox.create({ snapshot: "snap-000000000000" }), NotFoundError);

  const ids = (await Snapshot.list()).map((s) => s.id);
  for (const s of [kept, def, whilePaused, whileStopped]) assert.ok(ids.includes(s.id));
  const deleted = await Snapshot.delete(def.id);
  assert.ok((await audit()).some((e) => e.id === deleted && e.event === "snapshot.deleted"));
  await assert.rejects(Snapshot.get(def.id), NotFoundError);
  await assert.rejects(Snapshot.delete(def.id), NotFoundError);

  // expired by now (its second has passed): the next list removes it and logs that
  assert.ok(await waitFor(() => Date.now() > Date.parse(short.expiresAt!), 3000));
  assert.equal((await Snapshot.list()).some((s) => s.id === short.id), false);
  assert.equal(existsSync(`${SNAPS}/${short.id}`), false);
  assert.ok((await audit()).some((e) => e.event === "snapshot.expired" && e.labels.snapshot === short.id));
  for (const s of [kept, whilePaused, whileStopped]) await Snapshot.delete(s.id);
});

test("snapshot: owner death and TTL clean up a forked sandbox: no folder, no process, nothing mounted", async () => {
  const [cmd, ...args] = runtimeCommand(`${FIX}scripts/fork-owner.ts`);
  const c = await runtime().spawn(cmd, args, { stderr: "null" });
  const [parent, fork] = (await firstLine(c.stdout!)).split(" ");
  mine.add(parent!);
  assert.match(fork ?? "", /^sbx-/);
  const left = [remains(parent!), remains(fork!)];
  c.kill("SIGKILL");
  await c.status;
  assert.ok(await waitFor(() => !left.some((f) => f()), 8000), "something of the fork or its parent outlived their owner");
  // the snapshot outlives them (it has its own retention)
  for (const s of (await Snapshot.list()).filter((s) => s.sandboxId === parent)) await Snapshot.delete(s.id);

  await using sb = await Sandbox.create();
  mine.add(sb.id);
  const child = await sb.fork({ ttl: 2 });
  const gone = remains(child.id);
  if (isRoot) assert.ok(mountsOf(child.id).length > 0, "the fork's overlay is mounted (in its launcher's namespace)");
  assert.ok(await waitFor(() => !gone(), 10_000), "the fork outlived its TTL");
  await Snapshot.delete(child.restoredFrom!.snapshotId);
});

test("snapshot: on a copy-on-write state root (a loop-mounted XFS) a fork of 100 MB is a reflink clone; both sides change independently", async (t) => {
  const skipped = await withCowStateRoot(1024, async (state) => {
    const out = await cowFork(state, ["sides", "-", "100"]);
    const f = out.forkedFrom as Record<string, unknown>;
    assert.equal(f.method, "clone");
    assert.equal(f.snapshotId, null, "a clone stores no snapshot");
    assert.deepEqual(out.info, f);
    assert.equal(out.restoredFrom, null, "a clone is not a restore: nothing was verified, and it does not say so");
    assert.match(String(f.auditId), /^aud_/);
    const head = String(out.head);
    const bytes = `${100 * 1024 * 1024}\n`;
    // the parent: its marker gone, its big file as it was; the fork: its marker, its big file rewritten at the start
    assert.equal(out.parent, `big\nonly-parent\n${head}${bytes}`);
    assert.equal(out.child, `child\nbig\nwho\n 00 00 00 00 00 00 00 00\n${bytes}`);
    assert.notEqual(out.childUid, out.parentUid, "the clone was not given to the fork's own uid");
    assert.deepEqual(out.grand, { method: "clone", who: "child\n" });
  });
  if (skipped) t.skip(skipped);
});
