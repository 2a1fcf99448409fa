// Secrets: SecretRef sources and refusals, the redaction helper, and real sandboxes whose egress
// proxy swaps placeholders for values only in requests to the hosts a secret is bound to, against
// servers in a network namespace this test makes (tests/netns.ts; never an address outside this
// machine). The values are canaries: after the run, no error, log event, audit entry, state file or
// anything the guest can reach holds one — exact, base64 or URL-encoded.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import process from "node:process";
import { type LogEvent, NetworkPolicy, NotFoundError, Sandbox, SecretRef, UnsupportedError } from "../mod.ts";
import { redact, REDACTED, secretForms } from "../src/redact.ts";
import { terminatorDir } from "../src/engines/local/network.ts";
import { collect, egressPids, STATE, waitFor } from "./helpers.ts";
import { startTestNet, type TestNet } from "./netns.ts";

const canary = (what: string) => `canary-${what}-${randomBytes(12).toString("hex")}`;
const sha = (s: string) => createHash("sha256").update(s).digest("hex");

test("redact: exact, base64 at every alignment, URL-safe base64, URL and JSON escapes", () => {
  const v = "s3cr3t/value+with spaces&more";
  const texts = [
    `x ${v} y`,
    `Authorization: Basic ${btoa(`user:${v}`)}`,
    `Basic ${btoa(`ab:${v}`)}`,
    `Basic ${btoa(`a:${v}`)}`,
    btoa(v).replaceAll("+", "-").replaceAll("/", "_"),
    `?q=${encodeURIComponent(v)}`,
    `?q=${encodeURIComponent(v).replaceAll("%20", "+")}`,
    JSON.stringify({ v }),
  ];
  for (const t of texts) {
    const r = redact(t, [v]);
    assert.ok(r.includes(REDACTED), t);
    for (const f of secretForms(v)) assert.ok(!r.includes(f), `${t} → ${r} still holds ${f}`);
  }
  assert.equal(redact("nothing to hide", [v]), "nothing to hide");
});

test("secrets: sources, a missing secret names where it looked (never a value), hmac/sigv4 refused", async () => {
  assert.deepEqual(SecretRef.from("openai-api-key").from, { env: "OPENAI_API_KEY" });
  const missing = `MVM_TEST_MISSING_${randomBytes(4).toString("hex").toUpperCase()}`;
  const e1 = await Sandbox.create({ secrets: { K: SecretRef.from("k1", { hosts: ["api.test"], from: { env: missing } }) } }).catch((e) =>
    e
  );
  assert.ok(e1 instanceof NotFoundError, String(e1));
  assert.match(e1.message, new RegExp(`"k1" \\(secrets\\.K\\).*environment variable ${missing}`));
  const e2 = await Sandbox.create({ secrets: { K: SecretRef.from("k2", { hosts: ["api.test"], from: { file: "/nonexistent/k2" } }) } })
    .catch((e) => e);
  assert.ok(e2 instanceof NotFoundError && /the file \/nonexistent\/k2 could not be read \(ENOENT\)/.test(e2.message), String(e2));
  const e3 = await Sandbox.create({
    secrets: { K: SecretRef.from("k3", { hosts: ["s3.test"], type: "sigv4", from: () => "aws-secret-value" }) },
  }).catch((e) => e);
  assert.ok(e3 instanceof UnsupportedError && /sigv4.*later step/.test(e3.message), String(e3));
  const e4 = await Sandbox.create({ secrets: { K: SecretRef.from("k4", { hosts: ["a.test"], from: () => "two\nlines-value" }) } })
    .catch((e) => e);
  assert.match(String(e4), /line break/);
  assert.ok(!String(e4).includes("two\nlines"));
});

let net: TestNet;
before(async () => {
  net = await startTestNet();
});
after(() => net?.stop());

test("secrets: swapped only for bound hosts, over TLS; the guest, logs, audit, errors and state never hold a value", async () => {
  const v1 = canary("bearer");
  const v2 = canary("basic");
  const v3 = canary("other");
  const dir = mkdtempSync(`${tmpdir()}/mvm-secret-test-`);
  writeFileSync(`${dir}/basic`, `${v2}\n`, { mode: 0o600 });
  const envName = `MVM_TEST_SECRET_${randomBytes(4).toString("hex").toUpperCase()}`;
  process.env[envName] = v3;
  const policy = NetworkPolicy.denyByDefault()
    .allowHttps("api.test")
    .allowHttp("api.test")
    .allowHttps("other.test")
    .allowHttps("plain.test")
    .resolveTo("api.test", net.srv)
    .resolveTo("other.test", net.srv)
    .resolveTo("plain.test", net.srv)
    .withUpstreamCa(net.ca);
  const sb = await Sandbox.create({
    network: policy,
    secrets: {
      TOKEN: SecretRef.from("token", { hosts: ["api.test"], from: () => Promise.resolve(v1) }),
      BASIC: SecretRef.from("basic", { hosts: ["api.test"], type: "basic", from: { file: `${dir}/basic` } }),
      OTHER: SecretRef.from("other", { hosts: ["other.test"], from: { env: envName } }),
    },
  });
  const errors: unknown[] = [];
  let events: LogEvent[] = [];
  try {
    delete process.env[envName];
    const env = (await sb.commands.run(["sh", "-c", 'echo "$TOKEN $BASIC $OTHER $SSL_CERT_FILE"'])).stdout.trim().split(" ");
    for (const p of env.slice(0, 3)) assert.match(p!, /^mvm-secret-[0-9a-f]{48}$/);
    assert.equal(env[3], "/etc/ssl/certs/ca-certificates.crt");
    const tok = env[0]!;
    await sb.files.write("/app/ca.pem", net.ca);
    // curl through the proxy variables (CONNECT) trusting the system bundle of its /etc; Node's fetch
    // without them (NODE_EXTRA_CA_CERTS); python's urllib with basic auth, no proxy
    const r = await sb.commands.run([
      "sh",
      "-c",
      'curl -sS -m 20 -H "Authorization: Bearer $TOKEN" https://api.test/hash/curl && echo && ' +
      `node -e 'fetch("https://api.test/hash/node", { headers: { authorization: "Bearer " + process.env.TOKEN } }).then(r => r.text()).then(console.log)' && ` +
      `python3 -c 'import urllib.request, base64, os
h = urllib.request.build_opener(urllib.request.ProxyHandler({}))
q = urllib.request.Request("https://api.test/hash/urllib", headers={"Authorization": "Basic " + base64.b64encode(("me:" + os.environ["BASIC"]).encode()).decode()})
print(h.open(q, timeout=20).read().decode())' && ` +
      // an allowed host no secret is bound to: spliced, so it sees the placeholder, never a value
      'curl -sS -m 20 --cacert /app/ca.pem -H "Authorization: Bearer $TOKEN" https://plain.test/hash/plain && echo',
    ], { timeoutSeconds: 120 });
    assert.equal(r.exitCode, 0, r.stderr);
    const seen = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(seen.map((s) => s.path), ["/hash/curl", "/hash/node", "/hash/urllib", "/hash/plain"]);
    assert.equal(seen[0].auth_sha256, sha(`Bearer ${v1}`), "curl's placeholder was swapped");
    assert.equal(seen[1].auth_sha256, sha(`Bearer ${v1}`), "Node's placeholder was swapped");
    assert.equal(seen[2].auth_sha256, sha(`Basic ${btoa(`me:${v2}`)}`), "basic credentials were swapped inside their base64");
    assert.equal(seen[3].auth_sha256, sha(`Bearer ${tok}`), "an unbound host gets the placeholder as it is");

    // refused: another secret's placeholder to a bound host, a placeholder in clear text, a Host or SNI naming another host
    const refused = await sb.commands.run([
      "sh",
      "-c",
      'curl -sS -m 20 -H "Authorization: Bearer $OTHER" https://api.test/hash/x; echo; ' +
      'curl -sS -m 20 -H "Authorization: Bearer $TOKEN" http://api.test/hash/y; echo; ' +
      'curl -sS -m 20 --noproxy "*" -H "Host: other.test" -H "Authorization: Bearer $OTHER" https://api.test/hash/z; echo rc=$?; ' +
      'curl -sS -m 20 --noproxy "*" --connect-to other.test:443:api.test:443 -H "Authorization: Bearer $OTHER" https://other.test/hash/w; echo rc=$?',
    ], { timeoutSeconds: 120 });
    const lines = refused.stdout.split("\n").filter((l) => l !== "");
    assert.match(lines[0]!, /refused by the sandbox's secret policy \(placeholder-not-bound\)/, refused.stdout);
    assert.match(lines[1]!, /refused by the sandbox's network policy \(placeholder-in-cleartext\)/, refused.stdout);
    assert.match(lines[2]!, /secret policy \(name-mismatch\)/, refused.stdout);
    assert.match(lines[4]!, /^rc=[1-9]/, `an SNI naming another host than the destination is refused: ${refused.stdout}`);
    // other.test itself, with its own secret, works
    const o = await sb.commands.run(["sh", "-c", 'curl -sS -m 20 -H "Authorization: Bearer $OTHER" https://other.test/hash/o']);
    assert.equal(JSON.parse(o.stdout).auth_sha256, sha(`Bearer ${v3}`), o.stderr);

    // errors that would carry a value are redacted (exact and base64)
    for (const p of [`/nonexistent/${v1}`, `/nonexistent/${btoa(v2)}`, `/nonexistent/${encodeURIComponent(v3 + " x")}`]) {
      const e = await sb.files.read(p).catch((e) => e);
      errors.push(e);
      assert.ok(e instanceof NotFoundError && e.message.includes(REDACTED), String(e));
    }
    // what the guest can reach: every process's environment and command line, its /tmp, its files
    const dump = await sb.commands.run([
      "sh",
      "-c",
      "cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null; env; tar -cf - /tmp /app /root /etc/ssl 2>/dev/null | base64",
    ]);
    assert.ok(dump.stdout.includes(tok), "the dump holds the guest's view");
    errors.push(JSON.stringify(dump));
    events = await collect(sb.logs());
    const denied = events.flatMap((e) => e.type === "network.denied" ? [`${e.host}:${e.reason}`] : []);
    for (const d of ["api.test:placeholder-not-bound", "api.test:placeholder-in-cleartext", "api.test:name-mismatch"]) {
      assert.ok(denied.includes(d), `${d} in ${denied.join(" ")}`);
    }
    assert.ok(events.some((e) => e.type === "network.connect" && e.host === "api.test" && e.reason === "tls-terminated"));
  } finally {
    await sb.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
  // the canary scan: errors, the guest's view, logs, audit entries and every file under the state root
  const files: string[] = [];
  const walk = (d: string) => {
    for (const n of readdirSync(d)) {
      const p = `${d}/${n}`;
      // lstat: a guest's symlink (in another sandbox's root under this state root) is never followed
      const st = lstatSync(p, { throwIfNoEntry: false });
      if (st?.isDirectory()) walk(p);
      else if (st?.isFile() && st.size < 64 * 1024 * 1024) files.push(readFileSync(p, "latin1"));
    }
  };
  walk(STATE.replace(/\/sandboxes$/, ""));
  const audit = await collect(sb.audit());
  const haystack = [
    ...errors.map((
      e,
    ) => (e instanceof Error ? `${e.message}\n${e.stack}\n${JSON.stringify((e as { details?: unknown }).details)}` : String(e))),
    JSON.stringify(events),
    JSON.stringify(audit),
    ...files,
  ].join("\n");
  for (const v of [v1, v2, v3]) {
    for (const f of secretForms(v)) assert.ok(!haystack.includes(f), `a form of a secret value leaked: ${f}`);
  }
});

/** Pids of this state root's shared TLS terminator (its cmdline names its folder). */
function terminatorPids(): number[] {
  const tail = `\0mvm-tls\0${terminatorDir(STATE)}\0`;
  return readdirSync("/proc").filter((d) => /^\d+$/.test(d)).flatMap((d) => {
    try {
      return readFileSync(`/proc/${d}/cmdline`, "utf8").endsWith(tail) ? [Number(d)] : [];
    } catch {
      return [];
    }
  });
}
const loadsOpenSsl = (pid: number) => readFileSync(`/proc/${pid}/maps`, "utf8").includes("libssl");

test("secrets: one shared terminator serves every sandbox with its own values (a ClientHello sent with its CONNECT too); killed, sandboxes keep working", async () => {
  const values = [canary("shared-a"), canary("shared-b")];
  const policy = NetworkPolicy.denyByDefault().allowHttps("api.test").resolveTo("api.test", net.srv).withUpstreamCa(net.ca);
  const sbs = await Promise.all(
    values.map((v) => Sandbox.create({ network: policy, secrets: { K: SecretRef.from("k", { from: () => v }) } })),
  );
  try {
    const call = (sb: Sandbox, path: string) =>
      sb.commands.run(["sh", "-c", `curl -sS -m 20 -H "Authorization: Bearer $K" https://api.test${path}`], { timeoutSeconds: 60 });
    const seen = await Promise.all(sbs.map((sb, i) => call(sb, `/hash/${i}`)));
    for (const [i, r] of seen.entries()) {
      assert.equal(JSON.parse(r.stdout).auth_sha256, sha(`Bearer ${values[i]}`), `sandbox ${i} got its own value: ${r.stdout}${r.stderr}`);
    }
    // the TLS ClientHello in the same packet as the CONNECT is terminated too (it was relayed untouched)
    await sbs[0]!.files.write("/app/early.py", readFileSync(new URL("./fixtures/network/early-hello.py", import.meta.url)));
    const early = await sbs[0]!.commands.run(["python3", "/app/early.py", "api.test", "/hash/early"], { timeoutSeconds: 60 });
    assert.equal(early.exitCode, 0, early.stderr);
    assert.deepEqual([JSON.parse(early.stdout).path, JSON.parse(early.stdout).auth_sha256], ["/hash/early", sha(`Bearer ${values[0]}`)]);
    // one terminator for the state root, reachable by the engine's uid only; the proxies never loaded OpenSSL
    const [pid, ...more] = terminatorPids();
    assert.ok(pid && more.length === 0, `one terminator: ${[pid, ...more]}`);
    const sock = statSync(`${terminatorDir(STATE)}/sock`);
    assert.deepEqual([sock.uid, sock.mode & 0o777, statSync(terminatorDir(STATE)).mode & 0o777], [process.getuid!(), 0o600, 0o700]);
    const proxies = sbs.flatMap((sb) => egressPids(sb.id));
    assert.equal(proxies.length, 2);
    for (const p of proxies) assert.equal(loadsOpenSsl(p), false, "a proxy whose connections the terminator took stays without OpenSSL");
    // its crash ends no sandbox: the proxies terminate TLS themselves (or reach a terminator started since)
    process.kill(pid, "SIGKILL");
    assert.ok(await waitFor(() => !terminatorPids().includes(pid), 10_000));
    const again = await Promise.all(sbs.map((sb, i) => call(sb, `/hash/again-${i}`)));
    for (const [i, r] of again.entries()) assert.equal(JSON.parse(r.stdout).auth_sha256, sha(`Bearer ${values[i]}`), r.stdout + r.stderr);
  } finally {
    await Promise.all(sbs.map((sb) => sb.destroy()));
  }
});

test("secrets: an upstream whose certificate the host does not trust never gets the value (no withUpstreamCa: 502)", async () => {
  const v = canary("unverified");
  await using sb = await Sandbox.create({
    network: NetworkPolicy.denyByDefault().allowHttps("api.test").resolveTo("api.test", net.srv),
    secrets: { K: SecretRef.from("k", { from: () => v }) }, // bound to the allowed hosts
  });
  const r = await sb.commands.run(["sh", "-c", 'curl -sS -m 20 -w " %{http_code}" -H "Authorization: Bearer $K" https://api.test/hash/u']);
  assert.match(r.stdout, /\(upstream-tls-unverified\)\n 502$/, r.stdout + r.stderr);
});

test("secrets: exposeToGuest passes the value itself, the explicit opt-in", async () => {
  const v = canary("exposed");
  await using sb = await Sandbox.create({
    secrets: { K: SecretRef.from("k", { hosts: ["api.test"], from: () => v, exposeToGuest: true }) },
  });
  assert.equal((await sb.commands.run(["sh", "-c", 'echo "$K"'])).stdout, `${v}\n`);
  assert.ok(!readFileSync(`${STATE}/${sb.id}/meta.json`, "utf8").includes(v), "meta.json keeps no value");
});
