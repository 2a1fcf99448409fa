// The signed audit chain: results name their entries, the chain survives destroy and holds no secret
// value, and verifyAudit() finds an edited, removed, reordered, added or cut-off line, a missing
// segment, and a chain forked by concurrent writers (it must not fork: several processes append at once).
import { test } from "node:test";
import assert from "node:assert/strict";
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { type AuditEntry, Sandbox, SecretRef, verifyAudit } from "../mod.ts";
import { AuditLog, verifyAuditDir } from "../src/audit.ts";
import { runtime } from "../src/runtime/mod.ts";
import { collectText } from "../src/streams.ts";
import { bundleForNode, collect, hasNode, RUNTIME, runtimeCommand, STATE } from "./helpers.ts";

const FIX = new URL("./fixtures/", import.meta.url).pathname;
const STATE_BASE = STATE.replace(/\/sandboxes$/, "");

/** A fresh chain folder with `n` entries (segments of `rotate` bytes), removed after `fn`. */
async function withChain(n: number, fn: (dir: string, log: AuditLog) => Promise<void> | void, rotate?: number): Promise<void> {
  const dir = `${mkdtempSync(`${tmpdir()}/mvm-audit-`)}/audit`;
  try {
    const log = new AuditLog(dir, "test", rotate);
    for (let i = 0; i < n; i++) log.append("test.op", { i, path: `/app/${i}` }, { sandbox: "sbx-000000000000" });
    await fn(dir, log);
  } finally {
    rmSync(dir.replace(/\/audit$/, ""), { recursive: true, force: true });
  }
}
const seg = (dir: string, n = 1) => `${dir}/chain-${String(n).padStart(6, "0")}.jsonl`;
const lines = (file: string) => readFileSync(file, "utf8").split("\n").slice(0, -1);
const put = (file: string, ls: string[]) => writeFileSync(file, ls.map((l) => l + "\n").join(""));

test("audit: a fresh chain verifies; its key is 0600 in a 0700 folder; an append costs well under a millisecond", async () => {
  await withChain(0, (dir, log) => {
    const t = performance.now();
    for (let i = 0; i < 500; i++) log.append("test.op", { i });
    const perAppend = (performance.now() - t) / 500;
    console.log(`audit append: ${(perAppend * 1000).toFixed(0)} µs each over 500 (sign, lock, write, head)`);
    const r = verifyAuditDir(dir);
    assert.equal(r.status, "VERIFIED", JSON.stringify(r.firstBad));
    assert.equal(r.entries, 500);
    assert.equal(statSync(`${dir}/key`).mode & 0o777, 0o600);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    const first = JSON.parse(lines(seg(dir))[0]);
    assert.equal(first.prev_hash, "A".repeat(43), "genesis is 32 zero bytes");
    assert.deepEqual(Object.keys(first), ["entry", "canonical", "prev_hash", "signature"]);
  });
});

test("audit: verifyAudit names the first edited, removed, reordered, added or cut-off line", async () => {
  const cases: Array<[string, (ls: string[]) => string[], RegExp]> = [
    ["an edited entry", (ls) => ls.map((l, i) => i === 5 ? l.replace('"i":5', '"i":6') : l), /edited/],
    // a different first character (one that was already "A" would change nothing)
    [
      "an edited signature",
      (ls) => ls.map((l, i) => i === 5 ? l.replace(/"signature":"(.)/, (_, c: string) => `"signature":"${c === "A" ? "B" : "A"}`) : l),
      /signature|prev_hash/,
    ],
    ["a removed line", (ls) => ls.filter((_, i) => i !== 5), /removed|moved/],
    ["two lines swapped", (ls) => [...ls.slice(0, 5), ls[6], ls[5], ...ls.slice(7)], /removed|moved/],
    ["a repeated line", (ls) => [...ls.slice(0, 6), ls[5], ...ls.slice(6)], /removed|moved|added/],
    ["the last line cut off", (ls) => ls.slice(0, -1), /cut|end/],
  ];
  for (const [what, change, why] of cases) {
    await withChain(10, (dir) => {
      put(seg(dir), change(lines(seg(dir))));
      const r = verifyAuditDir(dir);
      assert.equal(r.status, "MISMATCH", what);
      assert.match(r.firstBad!.reason, why, `${what}: ${r.firstBad!.reason}`);
      if (what !== "the last line cut off") assert.equal(r.firstBad!.line, what === "a repeated line" ? 7 : 6, what);
    });
  }
});

test("audit: segments rotate at the size limit with a signed hand-off; a removed segment is found", async () => {
  await withChain(200, (dir, log) => {
    const files = readdirSync(dir).filter((f) => f.startsWith("chain-")).sort();
    assert.ok(files.length >= 3, `only ${files.length} segments`);
    for (const f of files) assert.ok(statSync(`${dir}/${f}`).size <= 4096 + 2048, `${f} is too big`);
    const second = lines(`${dir}/${files[1]}`);
    assert.equal(JSON.parse(second[0]).entry.event, "audit.continued");
    assert.equal(JSON.parse(lines(`${dir}/${files[0]}`).at(-1)!).entry.event, "audit.rotated");
    const r = verifyAuditDir(dir);
    assert.equal(r.status, "VERIFIED", JSON.stringify(r.firstBad));
    // the chain goes on across a new writer (no cached head)
    new AuditLog(dir, "test", 4096).append("test.after");
    assert.equal(verifyAuditDir(dir).status, "VERIFIED");
    rmSync(`${dir}/${files[1]}`);
    const bad = verifyAuditDir(dir);
    assert.equal(bad.status, "MISMATCH");
    assert.match(bad.firstBad!.reason, /missing|hand-off/);
    void log;
  }, 4096);
});

test("audit: supervisors' spool files are signed into the chain in order; torn, forged and linked ones are never taken as they are", () => {
  const base = mkdtempSync(`${tmpdir()}/mvm-audit-`);
  try {
    const dir = `${base}/audit`;
    const log = new AuditLog(dir, "test", undefined, `${dir}/spool`);
    log.append("test.before");
    const spool = log.spool();
    assert.equal(statSync(spool).mode & 0o777, 0o700);
    const ev = (o: Record<string, unknown>) =>
      JSON.stringify({ sandbox: "sbx-aaaaaaaaaaaa", time: "2026-12-01T10:00:00.000Z", source: "supervisor", ...o }) + "\n";
    // written out of order: the ns in the name orders them
    writeFileSync(`${spool}/sup-7-2000.ev`, ev({ id: "sup-7-2000", type: "destroyed", reason: "ttl-expired" }));
    writeFileSync(`${spool}/sup-7-1000.ev`, ev({ id: "sup-7-1000", type: "started", initPid: 42, ttlSeconds: 3 }));
    writeFileSync(`${spool}/sup-8-3000.ev`, ev({ id: "sup-8-3000", type: "started" }).trimEnd()); // still being written
    writeFileSync(`${spool}/sup-8-4000.ev`, ev({ id: "aud_00000000000000000000", type: "files.write" }));
    writeFileSync(`${spool}/sup-8-5000.ev`, ev({ id: "sup-8-5000", type: "destroyed", reason: 'x","evil":"1' }));
    writeFileSync(`${base}/elsewhere`, ev({ id: "sup-8-6000", type: "destroyed", reason: "ttl-expired" }));
    symlinkSync(`${base}/elsewhere`, `${spool}/sup-8-6000.ev`);
    writeFileSync(`${spool}/notes.txt`, "not a spool file");
    log.append("test.after");
    const entries = readFileSync(`${dir}/chain-000001.jsonl`, "utf8").trim().split("\n").map((l) => JSON.parse(l).entry as AuditEntry);
    assert.deepEqual(entries.map((e) => e.event), [
      "test.before",
      "started",
      "destroyed",
      "audit.spool.rejected",
      "audit.spool.rejected",
      "audit.spool.rejected",
      "test.after",
    ]);
    assert.deepEqual(entries[1], {
      ...entries[1]!,
      id: "sup-7-1000",
      labels: { sandbox: "sbx-aaaaaaaaaaaa", source: "supervisor" },
      data: { at: "2026-12-01T10:00:00.000Z", initPid: 42, ttlSeconds: 3 },
    });
    assert.equal(entries[2]!.data?.reason, "ttl-expired");
    assert.deepEqual(entries.slice(3, 6).map((e) => e.data?.file), ["sup-8-4000.ev", "sup-8-5000.ev", "sup-8-6000.ev"]);
    assert.ok(!JSON.stringify(entries).includes("evil"), "a rejected file's content reached the chain");
    assert.deepEqual(readdirSync(spool).sort(), ["notes.txt", "sup-8-3000.ev"]);
    assert.ok(existsSync(`${base}/elsewhere`), "a link was followed");
    // once its newline is there, the file is taken
    appendFileSync(`${spool}/sup-8-3000.ev`, "\n");
    assert.equal(log.ingest(), 1);
    assert.equal(log.ingest(), 0);
    const r = verifyAuditDir(dir);
    assert.equal(r.status, "VERIFIED", JSON.stringify(r.firstBad));
    assert.equal(r.entries, 8);
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});

test("audit: four processes appending at once never fork the chain, one of them on Node when the suite is not", async () => {
  await withChain(1, async (dir) => {
    const own = runtimeCommand(`${FIX}scripts/audit-append.ts`);
    // Node has no flock and meets the others at the lock folder, which Deno and Bun take as well
    const node = RUNTIME !== "node" && hasNode() ? ["node", bundleForNode(`${FIX}scripts/audit-append.ts`)] : own;
    const kids = await Promise.all(
      [own, own, own, node].map(([cmd, ...args], k) =>
        runtime().spawn(cmd!, [...args, dir, "150", `w${k}`, "65536"], { stdout: "null", stderr: "piped" })
      ),
    );
    for (const k of kids) {
      const err = await collectText(k.stderr!);
      assert.equal((await k.status).code, 0, err);
    }
    const r = verifyAuditDir(dir);
    assert.equal(r.status, "VERIFIED", JSON.stringify(r.firstBad));
    const entries = readdirSync(dir).filter((f) => f.startsWith("chain-")).sort().flatMap((f) => lines(`${dir}/${f}`))
      .map((l) => JSON.parse(l).entry as AuditEntry).filter((e) => e.event === "test.append");
    assert.equal(entries.length, 600);
  });
});

test("audit: results name signed chain entries that outlive destroy and hold no secret value", async () => {
  const secretEnv = `env-value-${crypto.randomUUID()}`;
  const secretArg = `arg-value-${crypto.randomUUID()}`;
  const sb = await Sandbox.create({
    env: { TOKEN: secretEnv },
    secrets: { API_KEY: SecretRef.from("audit-test-key", { hosts: ["example.com"], from: () => "audit-test-secret-value" }) },
  });
  let ids: string[];
  try {
    const r = await sb.commands.run(["sh", "-c", `echo ${secretArg} > /app/s; echo "$TOKEN" >> /app/s`], { env: { OTHER: secretEnv } });
    const w = await sb.files.write("/app/a.txt", "a");
    const m = await sb.files.mkdir("/app/d");
    await sb.files.readText("/app/s");
    await sb.files.list("/app");
    const p = await sb.pause();
    const q = await sb.resume();
    ids = [r.auditId, w.auditId, m.auditId, p, q];
  } finally {
    await sb.destroy();
  }
  const entries = await collect(sb.audit());
  const byId = new Map(entries.map((e) => [e.id, e]));
  assert.deepEqual(ids.map((id) => byId.get(id)?.event), ["process.exited", "files.write", "files.mkdir", "paused", "resumed"]);
  const events = entries.map((e) => e.event);
  for (const e of ["created", "process.started", "files.read", "files.list", "destroy.requested"]) assert.ok(events.includes(e), e);
  assert.ok(entries.every((e) => e.labels.sandbox === sb.id));
  const report = await verifyAudit();
  assert.equal(report.status, "VERIFIED", JSON.stringify(report.firstBad));
  const dir = `${STATE_BASE}/audit`;
  const all = readdirSync(dir).filter((f) => f.startsWith("chain-")).map((f) => readFileSync(`${dir}/${f}`, "utf8")).join("");
  assert.ok(all.includes(sb.id));
  for (const s of [secretEnv, secretArg, btoa(secretEnv).replace(/=+$/, "")]) assert.ok(!all.includes(s), "a secret value is in the chain");
});
