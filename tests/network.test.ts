// Egress: NetworkPolicy rules and their error codes, and real sandboxes reaching HTTP/HTTPS servers
// that this test runs in a network namespace of its own (a veth pair with private addresses on this
// machine; nothing here ever targets an address outside it). Refusals of metadata, host and other
// addresses happen inside the sandbox's own namespace, which has no route out.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { InvalidInputError, type LogEvent, NetworkPolicy, Sandbox } from "../mod.ts";
import { classifyAddress } from "../src/network/addresses.ts";
import { hostMatches } from "../src/policy.ts";
import { egressPids, runtimeCommand, waitFor } from "./helpers.ts";
import { startTestNet, type TestNet } from "./netns.ts";

const code = (c: string) => (e: unknown) => e instanceof InvalidInputError && e.details.code === c;

test("network policy: upstream's codes for wildcard hosts and bad ports, *.suffix, host:port", () => {
  const p = NetworkPolicy.denyByDefault();
  for (const h of ["*", "0.0.0.0", "::", "[::]", "", "10.0.0.0/0", "*."]) {
    assert.throws(() => p.allowHttps(h), code("E_NETWORK_WILDCARD"), h);
  }
  assert.throws(() => p.allow("a.example", 0), code("E_NETWORK_INVALID_PORT"));
  assert.throws(() => p.allow("a.example", 65536), code("E_NETWORK_INVALID_PORT"));
  assert.throws(() => p.allow("a.example"), code("E_NETWORK_INVALID_PORT"));
  for (const h of ["127.0.0.1", "169.254.169.254", "100.100.100.200", "0.1.2.3", "100.64.0.1"]) {
    assert.throws(() => p.allowHttp(h), code("E_NETWORK_RESTRICTED"), h);
  }
  assert.throws(() => p.allowHttps("a.*.example"), code("E_NETWORK_WILDCARD"));
  assert.throws(() => p.allowHttps("https://a.example"), InvalidInputError);
  assert.throws(() => p.resolveTo("a.example", "127.0.0.1"), code("E_NETWORK_RESTRICTED"));
  const q = p.allow("DB.internal:5432").allowHttp("*.Example.com").allowHttps("10.1.2.3").resolveTo("db.internal", "10.9.9.9");
  assert.deepEqual(q.rules, [{ host: "db.internal", port: 5432 }, { host: "*.example.com", port: 80 }, { host: "10.1.2.3", port: 443 }]);
  assert.deepEqual(q.pins, { "db.internal": ["10.9.9.9"] });
  assert.deepEqual(p.rules, [], "policies are immutable");
  assert.ok(hostMatches("*.example.com", "a.b.example.com"));
  assert.ok(!hostMatches("*.example.com", "example.com"), "the apex is not a subdomain");
  assert.ok(!hostMatches("*.example.com", "badexample.com"));
});

test("network addresses: upstream's never-reachable list, embedded IPv4 included", () => {
  const table: Record<string, string> = {
    "169.254.169.254": "restricted",
    "169.254.170.2": "restricted",
    "100.100.100.200": "restricted",
    "fd00:ec2::254": "restricted",
    "127.0.0.5": "restricted",
    "::1": "restricted",
    "::": "restricted",
    "0.0.0.0": "restricted",
    "fe80::1": "restricted",
    "100.64.1.1": "restricted",
    "::ffff:169.254.169.254": "restricted",
    "64:ff9b::7f00:1": "restricted",
    "2002:a9fe:a9fe::1": "restricted",
    "2001:0:4136:e378:8000:63bf:80ff:fffe": "restricted", // Teredo for 127.0.0.1
    "10.0.0.1": "private",
    "172.16.0.1": "private",
    "192.168.1.1": "private",
    "fd12::1": "private",
    "224.0.0.1": "private",
    "240.0.0.1": "private",
    "93.184.216.34": "public",
    "2606:4700::1": "public",
  };
  for (const [a, c] of Object.entries(table)) assert.equal(classifyAddress(a), c, a);
  assert.equal(classifyAddress("api.example.com"), null);
  assert.equal(classifyAddress("01.2.3.4"), null);
});

// --- a server namespace: 10.213.N.2 behind a veth pair whose host end is 10.213.N.1 (tests/netns.ts)

let net: TestNet;
let SRV = "";
let HOST_END = "";
let ca = "";
let hostPorts: number[] = [];

before(async () => {
  net = await startTestNet();
  ({ srv: SRV, hostEnd: HOST_END, ca, hostPorts } = net);
});

after(() => net?.stop());

type Probe = Record<string, unknown>;
type Result = { ok: boolean; error?: string; status?: number; body?: { path: string; host: string }; addrs?: string[] };

async function probe(sb: Sandbox, probes: Probe[]): Promise<Result[]> {
  const r = await sb.commands.run(["python3", "/app/probe.py", ...probes.map((p) => JSON.stringify(p))], { timeoutSeconds: 120 });
  assert.equal(r.exitCode, 0, r.stderr);
  return JSON.parse(r.stdout);
}

test("egress: allowed hosts are reachable with and without proxy variables; everything else is refused at once", async () => {
  const policy = NetworkPolicy.denyByDefault()
    .allowHttp("api.test")
    .allowHttps("api.test")
    .allowHttp("*.wild.test")
    .allowHttp("localhost", hostPorts[0])
    .allowHttp("self.test", hostPorts[1])
    .resolveTo("self.test", HOST_END)
    .resolveTo("api.test", SRV)
    .resolveTo("a.wild.test", SRV)
    .resolveTo("wild.test", SRV);
  const sb = await Sandbox.create({ network: policy });
  try {
    await sb.files.write("/app/probe.py", readFileSync(new URL("./fixtures/network/probe.py", import.meta.url)));
    await sb.files.write("/app/ca.pem", ca);
    const env = (await sb.commands.run(["sh", "-c", "echo $HTTPS_PROXY"])).stdout;
    assert.equal(env, "http://198.18.0.1:998\n", "programs that honour proxy variables get them");
    // curl through the proxy variables (HTTP and CONNECT), and Node's fetch, which ignores them
    const curl = await sb.commands.run([
      "sh",
      "-c",
      "curl -sS -m 20 http://api.test/via-proxy && echo && curl -sS -m 20 --cacert /app/ca.pem https://api.test/via-connect && echo && " +
      "node -e 'fetch(\"http://api.test/node\").then(r => r.json()).then(j => console.log(JSON.stringify(j)))' && " +
      "NODE_EXTRA_CA_CERTS=/app/ca.pem node -e 'fetch(\"https://api.test/node-tls\").then(r => r.json()).then(j => console.log(JSON.stringify(j)))'",
    ], { timeoutSeconds: 120 });
    assert.equal(curl.exitCode, 0, curl.stderr);
    assert.deepEqual(curl.stdout.trim().split("\n").map((l) => JSON.parse(l).path), ["/via-proxy", "/via-connect", "/node", "/node-tls"]);

    const [dns, other, urllib, raw, tls, wild, apex] = await probe(sb, [
      { kind: "dns", host: "api.test" },
      { kind: "dns", host: "other.test" },
      { kind: "urllib", url: "http://api.test/urllib" },
      { kind: "raw", host: "api.test", port: 80, path: "/raw" },
      { kind: "tls", host: "api.test", port: 443, path: "/tls", cafile: "/app/ca.pem" },
      { kind: "raw", host: "a.wild.test", port: 80, path: "/wild" },
      { kind: "dns", host: "wild.test" },
    ]);
    assert.ok(dns.ok && dns.addrs![0].startsWith("198.18."), "allowed names resolve to a stand-in address");
    assert.equal(other.ok, false, "a name no rule allows does not resolve");
    assert.deepEqual([urllib.status, urllib.body?.path], [200, "/urllib"], JSON.stringify(urllib));
    assert.deepEqual([raw.status, raw.body?.path], [200, "/raw"], JSON.stringify(raw));
    assert.deepEqual([tls.status, tls.body?.path], [200, "/tls"], JSON.stringify(tls));
    assert.deepEqual([wild.status, wild.body?.host], [200, "a.wild.test"], JSON.stringify(wild));
    assert.equal(apex.ok, false, "*.wild.test does not allow the apex");
    // a rule's pattern is not a host name: "*.wild.test" asked for by name (DNS, CONNECT) is refused
    const [star] = await probe(sb, [{ kind: "dns", host: "*.wild.test" }]);
    assert.equal(star!.ok, false, "the name *.wild.test does not resolve");
    const connect = await sb.commands.run([
      "python3",
      "-c",
      "import socket; s = socket.create_connection(('198.18.0.1', 998), 10); s.sendall(b'CONNECT *.wild.test:80 HTTP/1.1\\r\\n\\r\\n'); " +
      "print(s.recv(100).split(b'\\r\\n')[0].decode())",
    ], { timeoutSeconds: 30 });
    assert.deepEqual([connect.stdout.trim(), connect.exitCode], ["HTTP/1.1 400 Bad Request", 0], connect.stderr);

    // refusals: each ends with an error, none waits for the probe's 20 s timeout
    const refused = await probe(sb, [
      { kind: "raw", host: "api.test", port: 8080 }, // an allowed name on a port no rule allows
      { kind: "raw", host: SRV, port: 80 }, // the server's own address, not named by any rule
      { kind: "raw", host: "169.254.169.254", port: 80 }, // metadata
      { kind: "raw", host: "127.0.0.1", port: hostPorts[0] }, // the host's loopback service (the guest has its own loopback)
      { kind: "raw", host: HOST_END, port: hostPorts[1] }, // the host's own address
      { kind: "raw", host: "api.test", port: 80, hostHeader: "evil.test" }, // another host behind an allowed one
      { kind: "tls", host: "api.test", port: 443, sni: "a.wild.test", cafile: "/app/ca.pem" }, // another name in the SNI
      { kind: "raw", host: "198.18.0.1", port: 999 }, // the interception port itself
      { kind: "udp", host: SRV, port: 9 },
      { kind: "tcp6", host: "2001:db8::1", port: 80 },
    ]);
    for (const [i, r] of refused.entries()) {
      assert.equal(r.ok, false, `probe ${i} must be refused: ${JSON.stringify(r)}`);
      assert.notEqual(r.error, "timeout", `probe ${i} must fail fast: ${JSON.stringify(r)}`);
    }
    // a name that resolves (on the host) to a restricted address is refused, also through the proxy
    const rebound = await sb.commands.run([
      "sh",
      "-c",
      `curl -sS -m 20 --noproxy '' -x http://198.18.0.1:998 http://localhost:${hostPorts[0]}/`,
    ]);
    assert.match(rebound.stdout, /refused by the sandbox's network policy \(restricted-address\)/);
    assert.doesNotMatch(rebound.stdout, /host-service/);
    // a name pinned (or resolved) to one of the host's own addresses is refused too: its services listen there
    const self = await sb.commands.run(["sh", "-c", `curl -sS -m 20 http://self.test:${hostPorts[1]}/`]);
    assert.match(self.stdout, /refused by the sandbox's network policy \(host-address\)/);
    const [selfRaw] = await probe(sb, [{ kind: "raw", host: "self.test", port: hostPorts[1] }]);
    assert.equal(selfRaw!.ok, false, JSON.stringify(selfRaw));
    assert.notEqual(selfRaw!.error, "timeout");
    const events: LogEvent[] = [];
    for await (const e of sb.logs()) events.push(e);
    const denied = events.flatMap((e) => e.type === "network.denied" ? [`${e.host}:${e.port}:${e.reason}`] : []);
    assert.ok(denied.includes("api.test:8080:not-allowed"), denied.join(" "));
    assert.ok(denied.includes(`localhost:${hostPorts[0]}:restricted-address`), denied.join(" "));
    assert.ok(denied.some((d) => d.startsWith("evil.test:") && d.endsWith(":name-mismatch")), denied.join(" "));
    assert.ok(events.some((e) => e.type === "network.connect" && e.host === "api.test"));
    const pids = egressPids(sb.id);
    const ppid = (p: number) => Number(readFileSync(`/proc/${p}/stat`, "utf8").replace(/^.*\) /s, "").split(" ")[1]);
    assert.equal(pids.filter((p) => !pids.includes(ppid(p))).length, 1, "one egress proxy per networked sandbox");
  } finally {
    await sb.destroy();
  }
  assert.ok(await waitFor(() => egressPids(sb.id).length === 0, 15_000), "the egress proxy ends with its sandbox");
});

test("egress: another host behind an allowed one is refused however it is named: split writes, keep-alive, bare LF, absolute form, SNI", async () => {
  const policy = NetworkPolicy.denyByDefault().allowHttp("api.test").allowHttps("api.test").resolveTo("api.test", SRV);
  await using sb = await Sandbox.create({ network: policy });
  await sb.files.write("/app/fronting.py", readFileSync(new URL("./fixtures/network/fronting.py", import.meta.url)));
  const r = await sb.commands.run(["python3", "/app/fronting.py"], { timeoutSeconds: 120 });
  assert.equal(r.exitCode, 0, r.stderr);
  const got: Record<string, string> = JSON.parse(r.stdout);
  assert.match(got.control!, /^HTTP\/1\.1 200/, "the allowed host answers");
  for (const [way, answer] of Object.entries(got)) {
    assert.ok(!answer.includes("evil.test"), `${way}: the server saw evil.test: ${JSON.stringify(answer)}`);
    // (the keep-alive connection's first answer may come before the reset, or be lost to it)
    if (way === "second request of a keep-alive connection") assert.ok((answer.match(/HTTP\/1\.1 200/g) ?? []).length <= 1, answer);
    else if (way !== "control") assert.ok(!/HTTP\/1\.[01] 200/.test(answer), `${way}: answered: ${JSON.stringify(answer)}`);
  }
  const events: LogEvent[] = [];
  for await (const e of sb.logs()) events.push(e);
  const denied = events.filter((e) => e.type === "network.denied" && e.reason === "name-mismatch");
  assert.ok(denied.length >= 8, `each way is logged as a name mismatch (${denied.length})`);
});

test("egress: a guest that opens refused connections in a loop cannot grow the host-side log without bound", async () => {
  const policy = NetworkPolicy.denyByDefault().allowHttp("api.test").resolveTo("api.test", SRV);
  await using sb = await Sandbox.create({ network: policy });
  // 3 s of refused connects (thousands), a pause, then one more: its line counts those left out
  const flood = "import socket, time\nend = time.time() + 3\nn = 0\nwhile time.time() < end:\n    n += 1\n" +
    "    try: socket.create_connection(('api.test', 8080), 2).close()\n    except OSError: pass\n" +
    "time.sleep(1.2)\ntry: socket.create_connection(('api.test', 8081), 2).close()\nexcept OSError: pass\nprint(n)";
  const r = await sb.commands.run(["python3", "-c", flood], { timeoutSeconds: 60 });
  assert.equal(r.exitCode, 0, r.stderr);
  const tries = Number(r.stdout);
  const events: LogEvent[] = [];
  for await (const e of sb.logs()) events.push(e);
  const denied = events.filter((e) => e.type === "network.denied");
  assert.ok(tries > 300, `the guest tried ${tries} times`);
  assert.ok(denied.length <= 100 + 10 * 6, `${denied.length} lines for ${tries} refusals`);
  const fields = denied as Array<LogEvent & { port?: number; suppressed?: number }>;
  const last = fields.find((e) => e.port === 8081);
  assert.ok(last && (last.suppressed ?? 0) > 0, `the last line counts what was left out since the line before: ${JSON.stringify(last)}`);
  const counted = fields.reduce((n, e) => n + 1 + (e.suppressed ?? 0), 0);
  assert.ok(counted >= tries, `every refusal is a line or counted in one (${counted} of ${tries})`);
});

test("egress: a sandbox without rules gets no proxy, no proxy variables and no route", async () => {
  await using sb = await Sandbox.create();
  const r = await sb.commands.run(["sh", "-c", 'echo "[$HTTPS_PROXY]"; curl -sS -m 5 http://198.18.0.1:998/ 2>&1; echo rc=$?']);
  assert.match(r.stdout, /^\[\]\n/);
  assert.match(r.stdout, /rc=7/);
  assert.equal(egressPids(sb.id).length, 0);
});

test("egress: a detached sandbox keeps its egress after the client that made it is gone", async () => {
  const [cmd, ...args] = runtimeCommand(new URL("./fixtures/network/detached-owner.ts", import.meta.url).pathname);
  const id = execFileSync(cmd!, [...args, SRV], { stdio: ["ignore", "pipe", "inherit"] }).toString().trim();
  assert.match(id, /^sbx-/);
  const sb = await Sandbox.connect(id);
  try {
    const r = await sb.commands.run(["curl", "-sS", "-m", "20", "--noproxy", "*", "http://api.test/after-owner"]);
    assert.equal(JSON.parse(r.stdout).path, "/after-owner", r.stderr);
  } finally {
    await sb.destroy();
  }
});
