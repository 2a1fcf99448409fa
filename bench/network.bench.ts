/**
 * Egress through the local engine's proxy against the same requests sent directly, in the same run:
 * HTTP and HTTPS servers in a network namespace this bench makes (tests/netns.ts: a veth pair with
 * private addresses on this machine, nothing outside it), reached by the same Python client from
 * inside a networked sandbox (DNS stand-in address, nftables redirect, the host-side proxy; for HTTPS
 * with a secret bound to the host, so the proxy terminates TLS and swaps the placeholder) and from
 * the host directly: request latency on a new connection each and over one keep-alive connection, and
 * one large download. Also the host memory of a networked sandbox's proxy: without a secret, with a
 * bound secret before and after requests to its host, and of the state root's shared TLS terminator
 * serving 1 and 10 sandboxes. Prints a Markdown table and the load average. Needs root.
 *
 * Run: deno run -A bench/network.bench.ts   |   bun bench/network.bench.ts   (BENCH_QUICK=1: fewer samples)
 *
 * @example
 * ```sh
 * deno run -A bench/network.bench.ts
 * ```
 * @module
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import process from "node:process";
import { NetworkPolicy, Sandbox, SecretRef } from "../mod.ts";
import { terminatorDir } from "../src/engines/local/network.ts";
import { startTestNet } from "../tests/netns.ts";

const quick = process.env.BENCH_QUICK === "1";
const N = quick ? 50 : 300;
const BYTES = (quick ? 16 : 128) * 1024 * 1024;
const STATE = `${(process.env.MVM_STATE_DIR || "/var/lib/mvm").replace(/\/+$/, "")}/sandboxes`;
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length - 1) * p))]!;

// N requests each on a new connection (connect, [TLS,] GET, read the answer), then N on one keep-alive
// connection, then one large download three times (the median counts: a single download's rate swings by
// half between runs on this machine). Answers are read by their Content-Length.
// Args: HOST PORT N BYTES [tls SNI [CAFILE]]; the Authorization header carries $TOKEN (a placeholder in the sandbox)
const CLIENT = `
import json, os, socket, ssl, sys, time
host, port, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
tls = len(sys.argv) > 5 and sys.argv[5] == "tls"
sni = sys.argv[6] if len(sys.argv) > 6 else host
ctx = ssl.create_default_context(cafile=sys.argv[7] if len(sys.argv) > 7 else None) if tls else None
auth = os.environ.get("TOKEN", "none")
def conn():
    s = socket.create_connection((host, port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ctx.wrap_socket(s, server_hostname=sni) if ctx else s
# the body is read into one buffer (as curl does): recv(262144) allocates 256 KiB a call, an mmap and its page
# faults when a call returns a small chunk, which made the client the bottleneck through a relay
BUF = memoryview(bytearray(262144))
def req(s, path, close):
    s.sendall(("GET %s HTTP/1.1\\r\\nHost: %s\\r\\nAuthorization: Bearer %s\\r\\nConnection: %s\\r\\n\\r\\n" % (path, sni, auth, "close" if close else "keep-alive")).encode())
    buf = b""
    while b"\\r\\n\\r\\n" not in buf:
        b = s.recv(65536)
        if not b: raise Exception("closed before the answer's head")
        buf += b
    head, body = buf.split(b"\\r\\n\\r\\n", 1)
    want = int([l.split(b":")[1] for l in head.split(b"\\r\\n") if l.lower().startswith(b"content-length:")][0])
    got = len(body)
    while got < want:
        n = s.recv_into(BUF)
        if not n: raise Exception("closed before the answer's end")
        got += n
    return got
def fresh(path):
    s = conn(); got = req(s, path, True); s.close(); return got
fresh("/warm")
lat, keep = [], []
for i in range(n):
    t = time.perf_counter(); fresh("/x"); lat.append((time.perf_counter() - t) * 1000)
s = conn(); req(s, "/warm", False)
for i in range(n):
    t = time.perf_counter(); req(s, "/x", False); keep.append((time.perf_counter() - t) * 1000)
s.close()
rates = []
for i in range(3):
    t = time.perf_counter(); got = fresh("/bytes/%d" % size); rates.append(got / (time.perf_counter() - t) / 1e6)
print(json.dumps({"lat": lat, "keep": keep, "mbps": sorted(rates)[1]}))
`;

type Mem = { pss: number; rss: number; dirty: number };
/** Host memory of a sandbox's egress proxy, in MB. */
const proxyMemory = (id: string): Mem => memoryOf((argv) => /\0mvm-egress\0\d+\0([^\0]*)\0/.exec(argv)?.[1] === `${STATE}/${id}`);
/** Host memory of the state root's shared TLS terminator, in MB. */
const terminatorMemory = (): Mem => memoryOf((argv) => argv.endsWith(`\0mvm-tls\0${terminatorDir(STATE)}\0`));
function memoryOf(match: (argv: string) => boolean): Mem {
  const pids = readdirSync("/proc").filter((d) => {
    try {
      return /^\d+$/.test(d) && match(readFileSync(`/proc/${d}/cmdline`, "utf8"));
    } catch {
      return false;
    }
  });
  const kb = (pid: string, key: string) =>
    Number(new RegExp(`${key}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"))?.[1]);
  const sum = (key: string) => pids.reduce((a, p) => a + kb(p, key), 0) / 1024;
  return { pss: sum("Pss"), rss: sum("Rss"), dirty: sum("Private_Dirty") };
}

/** Runs `run` against socat relaying 127.0.0.1:PORT to SERVER:80 and :443 (CA_FILE for the latter); null without socat. */
async function throughSocat(
  server: string,
  caFile: string,
  run: (port: number, ...rest: string[]) => { mbps: number },
): Promise<{ http: { mbps: number }; https: { mbps: number } } | null> {
  try {
    execFileSync("socat", ["-V"], { stdio: "ignore" });
  } catch {
    return null;
  }
  const relay = async (to: string) => {
    const port = 40000 + Math.floor(Math.random() * 10000);
    const child = spawn("socat", ["-b", "1048576", `TCP4-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork`, `TCP4:${server}:${to}`], {
      stdio: "ignore",
    });
    await new Promise((r) => setTimeout(r, 300));
    return { port, stop: () => child.kill("SIGTERM") };
  };
  const a = await relay("80"), b = await relay("443");
  try {
    return { http: run(a.port), https: run(b.port, "tls", "api.test", caFile) };
  } finally {
    a.stop();
    b.stop();
  }
}

async function inSandbox(sb: Sandbox, args: string[]): Promise<{ lat: number[]; keep: number[]; mbps: number }> {
  const r = await sb.commands.run(["python3", "-c", CLIENT, ...args], { timeoutSeconds: 600 });
  if (r.exitCode !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout);
}

const net = await startTestNet();
const tmp = mkdtempSync(`${tmpdir()}/mvm-net-bench-`);
try {
  writeFileSync(`${tmp}/ca.pem`, net.ca);
  const host = (...args: string[]) =>
    JSON.parse(execFileSync("/usr/bin/python3", ["-c", CLIENT, ...args], { stdio: ["ignore", "pipe", "inherit"] }).toString());
  const direct = host(net.srv, "80", String(N), String(BYTES));
  const directTls = host(net.srv, "443", String(N), String(BYTES), "tls", "api.test", `${tmp}/ca.pem`);
  // for scale: the same downloads from the host through socat (a plain userspace relay: read and write, one
  // process per connection) on the host's loopback, when socat is installed
  const viaSocat = await throughSocat(
    net.srv,
    `${tmp}/ca.pem`,
    (port, ...rest) => host("127.0.0.1", String(port), "5", String(BYTES), ...rest),
  );
  const base = NetworkPolicy.denyByDefault().allowHttp("api.test").allowHttps("api.test").resolveTo("api.test", net.srv);
  let proxied, spliced, mem;
  {
    await using sb = await Sandbox.create({ network: base });
    proxied = await inSandbox(sb, ["api.test", "80", String(N), String(BYTES)]);
    // HTTPS with no secret bound: the proxy reads the SNI and splices the connection, the guest verifies the server itself
    await sb.files.write("/tmp/ca.pem", net.ca);
    spliced = await inSandbox(sb, ["api.test", "443", String(N), String(BYTES), "tls", "api.test", "/tmp/ca.pem"]);
    mem = proxyMemory(sb.id);
  }
  // the same HTTPS requests, with a secret bound to the host: TLS terminated by the proxy, placeholder swapped
  // the proxy hands those connections to the state root's shared terminator: memory per sandbox is its
  // proxy's private dirty plus the terminator's shared by the N sandboxes that use it (N = 1, then 10)
  let terminated, memSecret, memSecretIdle, term1, mem10;
  {
    const make = (i: number) =>
      Sandbox.create({
        network: base.withUpstreamCa(net.ca),
        secrets: { TOKEN: SecretRef.from(`bench-token-${i}`, { hosts: ["api.test"], from: () => `bench-secret-value-${i}-0123456789` }) },
      });
    await using sb = await make(0);
    memSecretIdle = proxyMemory(sb.id);
    terminated = await inSandbox(sb, ["api.test", "443", String(N), String(BYTES), "tls", "api.test"]);
    memSecret = proxyMemory(sb.id);
    term1 = terminatorMemory();
    const more: Sandbox[] = [];
    try {
      for (let i = 1; i < 10; i++) more.push(await make(i));
      await Promise.all(more.map((m) => inSandbox(m, ["api.test", "443", "5", "1024", "tls", "api.test"])));
      const proxies = [sb, ...more].map((m) => proxyMemory(m.id).dirty);
      mem10 = { proxy: proxies.reduce((a, b) => a + b, 0) / proxies.length, term: terminatorMemory() };
    } finally {
      await Promise.all(more.map((m) => m.destroy()));
    }
  }
  type Run = { lat: number[]; keep: number[] };
  const lat = (name: string, a: Run, b: Run, key: "lat" | "keep" = "lat") =>
    [0.5, 0.95].map((p) => [
      `${name}, p${p * 100}`,
      `${pct(a[key], p).toFixed(2)} ms`,
      `${pct(b[key], p).toFixed(2)} ms`,
      `+${(pct(a[key], p) - pct(b[key], p)).toFixed(2)} ms`,
    ]);
  const thr = (name: string, a: { mbps: number }, b: { mbps: number }) => [
    name,
    `${a.mbps.toFixed(0)} MB/s`,
    `${b.mbps.toFixed(0)} MB/s`,
    `${(a.mbps / b.mbps * 100).toFixed(0)}%`,
  ];
  const memRow = (name: string, m: Mem) => [
    name,
    `private dirty ${m.dirty.toFixed(2)} MB; PSS ${m.pss.toFixed(2)} MB, RSS ${m.rss.toFixed(1)} MB`,
    "—",
    "target ≤ 3 MB: private dirty is what each further sandbox adds (Perl's code is shared by every proxy)",
  ];
  const rows = [
    ...lat("HTTP request latency (new connection each)", proxied, direct),
    ...lat("HTTP request latency (one keep-alive connection)", proxied, direct, "keep"),
    thr(`HTTP throughput, one ${BYTES >> 20} MiB download`, proxied, direct),
    ...lat("HTTPS request latency, spliced by SNI, no secret (new connection each)", spliced, directTls),
    ...lat("HTTPS request latency, spliced by SNI, no secret (one keep-alive connection)", spliced, directTls, "keep"),
    thr(`HTTPS throughput spliced by SNI, one ${BYTES >> 20} MiB download`, spliced, directTls),
    ...(viaSocat
      ? [
        thr(`for scale: HTTP through socat on the host (a plain relay), one ${BYTES >> 20} MiB download`, viaSocat.http, direct),
        thr(`for scale: HTTPS through socat on the host (a plain relay), one ${BYTES >> 20} MiB download`, viaSocat.https, directTls),
      ]
      : []),
    ...lat("HTTPS request latency, TLS terminated and a secret swapped (new connection each)", terminated, directTls),
    ...lat("HTTPS request latency, TLS terminated and a secret swapped (one keep-alive connection)", terminated, directTls, "keep"),
    thr(`HTTPS throughput through TLS termination, one ${BYTES >> 20} MiB download`, terminated, directTls),
    memRow("host memory of the sandbox's egress proxy (idle)", mem),
    memRow("the same with a bound secret, before any request to it (OpenSSL not loaded yet)", memSecretIdle),
    memRow("the same with a bound secret, after the requests (taken by the shared terminator: no OpenSSL here)", memSecret),
    memRow("the state root's shared TLS terminator, serving 1 sandbox", term1),
    memRow("the same, serving 10 sandboxes", mem10.term),
    [
      "host memory per sandbox with a used bound secret: its proxy + the terminator / N",
      `N = 1: ${(memSecret.dirty + term1.dirty).toFixed(2)} MB; N = 10: ${(mem10.proxy + mem10.term.dirty / 10).toFixed(2)} MB`,
      "—",
      "private dirty (the terminator's code is shared with the proxies')",
    ],
  ];
  console.log(
    `egress bench (${N} requests; runtime ${"Bun" in globalThis ? "Bun" : "Deno"}; load ${loadavg().map((l) => l.toFixed(2)).join(" ")})\n`,
  );
  console.log("| measure | through the proxy (sandbox) | direct (host) | difference |\n|---|---|---|---|");
  for (const row of rows) console.log(`| ${row.join(" | ")} |`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
  net.stop();
}
