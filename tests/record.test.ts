// Record mode: the upstream RuntimeRecording wire shape, mode resolution,
// the Workload IR lowering, and input validation. Real subprocesses run the
// seed's examples with MVM_SDK_MODE=record and their files are compared with
// shared fixtures.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import process from "node:process";
import {
  AdmissionError,
  currentRecording,
  InvalidInputError,
  NetworkPolicy,
  resetRecording,
  Sandbox,
  SecretRef,
  toWorkload,
  UnsupportedError,
} from "../mod.ts";
import { runtime } from "../src/runtime/mod.ts";
import { collectText } from "../src/streams.ts";
import { runtimeCommand } from "./helpers.ts";

const FIX = new URL("./fixtures/", import.meta.url).pathname;

async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const saved: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(vars)) {
    saved[k] = process.env[k];
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  resetRecording();
  try {
    return await fn();
  } finally {
    resetRecording();
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

async function runScript(file: string, env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  const [cmd, ...args] = runtimeCommand(file);
  const c = await runtime().spawn(cmd, args, { env, stdout: "null" });
  const stderr = await collectText(c.stderr!);
  return { code: (await c.status).code, stderr };
}

for (const n of [1, 2]) {
  test(`record: the seed's example ${n} writes the expected recording at exit`, async () => {
    const dir = mkdtempSync(`${tmpdir()}/mvm-rec-`);
    try {
      const out = `${dir}/rec.json`;
      const r = await runScript(`${FIX}record/seed-example-${n}.ts`, { MVM_SDK_MODE: "record", MVM_SDK_OUT_PATH: out });
      assert.equal(r.code, 0, r.stderr);
      const got = JSON.parse(readFileSync(out, "utf8"));
      const want = JSON.parse(readFileSync(`${FIX}record/seed-example-${n}.expected.json`, "utf8"));
      assert.deepEqual(got, want);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test("record: MVM_SDK_OUT_PATH alone selects record mode, whatever engine the code asks", async () => {
  const dir = mkdtempSync(`${tmpdir()}/mvm-rec-`);
  try {
    await withEnv({ MVM_SDK_MODE: undefined, MVM_SDK_OUT_PATH: `${dir}/x.json` }, async () => {
      const sb = await Sandbox.create({ engine: "local", workloadId: "w" });
      assert.equal(sb.engine, "record");
      await sb.destroy();
    });
    await withEnv({ MVM_SDK_MODE: "record", MVM_SDK_OUT_PATH: undefined }, async () => {
      const sb = await Sandbox.create({ engine: "mvmctl" });
      assert.equal(sb.engine, "record");
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("record: plan and unknown modes are refused with a clear message", async () => {
  await withEnv({ MVM_SDK_MODE: "plan" }, async () => {
    await assert.rejects(Sandbox.create(), (e: unknown) => e instanceof UnsupportedError && /mvmctl run --mode plan/.test(e.message));
  });
  await withEnv({ MVM_SDK_MODE: "dry" }, async () => {
    await assert.rejects(Sandbox.create(), (e: unknown) => e instanceof InvalidInputError && e.details.field === "MVM_SDK_MODE");
  });
});

test("record: calls that need a real result throw UNSUPPORTED and record nothing", async () => {
  await withEnv({ MVM_SDK_MODE: "record", MVM_SDK_OUT_PATH: undefined }, async () => {
    await using sb = await Sandbox.create("python-3.12", { workloadId: "w" });
    await assert.rejects(sb.commands.run(["true"]), UnsupportedError);
    await assert.rejects(sb.files.read("/x"), UnsupportedError);
    await assert.rejects(sb.files.list("/"), UnsupportedError);
    const p = await sb.commands.start(["python", "-u", "srv.py"], { env: { B: "2", A: "1" } });
    await assert.rejects(p.status, UnsupportedError);
    await assert.rejects(p.stdout.getReader().read(), UnsupportedError);
    await p.kill();
    const rec = currentRecording()!;
    assert.deepEqual(rec.ops, [
      {
        kind: "command_start",
        argv: ["python", "-u", "srv.py"],
        env: { A: { kind: "literal", value: "1" }, B: { kind: "literal", value: "2" } },
      },
      { kind: "kill" },
    ]);
  });
});

test("record: secrets lower to secret_ref, with their own hosts or the allowlist's", async () => {
  await withEnv({ MVM_SDK_MODE: "record", MVM_SDK_OUT_PATH: undefined }, async () => {
    await Sandbox.create("python-3.12", {
      network: NetworkPolicy.denyByDefault().allowHttps("api.openai.com").allow("db.example.com", 5432),
      secrets: {
        A: SecretRef.from("a"),
        B: SecretRef.from("b", { hosts: ["s3.amazonaws.com"], type: "sigv4" }),
      },
      env: { PLAIN: "v" },
      ttl: "1h",
      tags: { team: "x" },
    });
    const c = currentRecording()!.create;
    assert.deepEqual(c.env.A, {
      kind: "secret_ref",
      ref: { name: "a", mount: { kind: "env", var: "A" }, allowed_hosts: ["api.openai.com", "db.example.com"], auth_type: "bearer" },
    });
    assert.deepEqual(c.env.B, {
      kind: "secret_ref",
      ref: { name: "b", mount: { kind: "env", var: "B" }, allowed_hosts: ["s3.amazonaws.com"], auth_type: "sigv4" },
    });
    assert.deepEqual(c.env.PLAIN, { kind: "literal", value: "v" });
    assert.equal(c.ttl_seconds, 3600);
    assert.deepEqual(c.tags, { team: "x" });
    assert.deepEqual(c.network, {
      mode: "bridge",
      egress: { allowlist: [{ host: "api.openai.com", port: 443 }, { host: "db.example.com", port: 5432 }] },
    });
    assert.ok(!JSON.stringify(currentRecording()).includes('value":"sk-'));
  });
});

test("record: ttl spellings parse as upstream does; ttlSeconds is accepted", async () => {
  for (const [ttl, secs] of [["30m", 1800], ["1h", 3600], ["3600s", 3600], ["3600", 3600], [90, 90]] as const) {
    await withEnv({ MVM_SDK_MODE: "record" }, async () => {
      await Sandbox.create({ ttl });
      assert.equal(currentRecording()!.create.ttl_seconds, secs);
    });
  }
  await withEnv({ MVM_SDK_MODE: "record" }, async () => {
    await Sandbox.create({ ttlSeconds: 42 });
    assert.equal(currentRecording()!.create.ttl_seconds, 42);
  });
});

test("record: bad input is INVALID_INPUT naming the field", async () => {
  await withEnv({ MVM_SDK_MODE: "record" }, async () => {
    const field = (f: string) => (e: unknown) => {
      assert.ok(e instanceof InvalidInputError, String(e));
      assert.equal(e.code, "INVALID_INPUT");
      assert.equal(e.details.field, f);
      assert.ok(e.message.includes(f), e.message);
      return true;
    };
    await assert.rejects(Sandbox.create(""), field("template"));
    await assert.rejects(Sandbox.create({ ttl: "soon" }), field("ttl"));
    await assert.rejects(Sandbox.create({ ttl: 0 }), field("ttl"));
    await assert.rejects(Sandbox.create({ ttl: "-5m" }), field("ttl"));
    assert.throws(() => NetworkPolicy.denyByDefault().allowHttps("*"), field("network.allow.host"));
    assert.throws(() => SecretRef.from("k", { hosts: ["*"] }), field("secret.hosts[0]"));
    await assert.rejects(Sandbox.create({ secrets: { K: SecretRef.from("k") } }), field("secrets.K"));
    await assert.rejects(Sandbox.create({ secrets: { K: "sk-raw" as unknown as SecretRef } }), field("secrets.K"));
    const sb = await Sandbox.create({ workloadId: "w" });
    await assert.rejects(sb.commands.start([]), field("argv"));
    await assert.rejects(sb.commands.start(["python", 3 as unknown as string]), field("argv[1]"));
    await assert.rejects(sb.commands.start(["x"], { env: { LD_PRELOAD: "/evil.so" } }), field("env.LD_PRELOAD"));
    await assert.rejects(sb.commands.start(["x"], { env: { NODE_OPTIONS: "--require x" } }), field("env.NODE_OPTIONS"));
    await assert.rejects(sb.files.write("", "x"), field("path"));
    await assert.rejects(sb.files.write("/a\0b", "x"), field("path"));
  });
});

for (const f of readdirSync(`${FIX}workload`).filter((f) => f.endsWith(".recording.json")).sort()) {
  const name = f.replace(".recording.json", "");
  test(`toWorkload: fixture ${name}`, () => {
    const rec = JSON.parse(readFileSync(`${FIX}workload/${f}`, "utf8"));
    const want = JSON.parse(readFileSync(`${FIX}workload/${name}.expected.json`, "utf8"));
    if (want.error) {
      assert.throws(() => toWorkload(rec), (e: unknown) => e instanceof AdmissionError && e.details.error === want.error);
    } else {
      assert.deepEqual(toWorkload(rec), want);
    }
  });
}
