/**
 * Egress through the local engine's proxy against the same requests sent directly, in the same run:
 * an HTTP server in a network namespace this bench makes (a veth pair with private addresses on this
 * machine, nothing outside it), reached by the same Python client from inside a networked sandbox
 * (DNS stand-in address, nftables redirect, the host-side proxy) and from the host directly. Also the
 * host memory of a networked sandbox's proxy. Prints a Markdown table. Needs root.
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
import { readdirSync, readFileSync } from "node:fs";
import process from "node:process";
import { NetworkPolicy, Sandbox } from "../mod.ts";

const quick = process.env.BENCH_QUICK === "1";
const N = quick ? 50 : 300;
const BYTES = (quick ? 16 : 128) * 1024 * 1024;
const STATE = `${(process.env.MVM_STATE_DIR || "/var/lib/mvm").replace(/\/+$/, "")}/sandboxes`;
const NS = `mvmb-${process.pid}`;
const VETH = `mvb${process.pid % 100000}`;
const SRV = "10.214.0.2";
const sh = (...a: string[]) => execFileSync(a[0]!, a.slice(1), { stdio: ["ignore", "pipe", "pipe"] }).toString();
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length - 1) * p))]!;

// one request per connection (connect, GET, read to the end), N times; then one large download
const CLIENT = `
import json, socket, sys, time
host, port, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def get(path):
    s = socket.create_connection((host, port), timeout=30)
    s.sendall(("GET %s HTTP/1.1\\r\\nHost: %s\\r\\nConnection: close\\r\\n\\r\\n" % (path, host)).encode())
    got = 0
    while True:
        b = s.recv(262144)
        if not b: break
        got += len(b)
    s.close()
    return got
get("/warm")
lat = []
for i in range(n):
    t = time.perf_counter(); get("/x"); lat.append((time.perf_counter() - t) * 1000)
t = time.perf_counter(); got = get("/bytes/%d" % size); dt = time.perf_counter() - t
print(json.dumps({"lat": lat, "mbps": got / dt / 1e6}))
`;

sh("ip", "netns", "add", NS);
try {
  sh("ip", "link", "add", VETH, "type", "veth", "peer", "name", `${VETH}p`);
  sh("ip", "link", "set", `${VETH}p`, "netns", NS);
  sh("ip", "addr", "add", "10.214.0.1/30", "dev", VETH);
  sh("ip", "link", "set", VETH, "up");
  sh("ip", "netns", "exec", NS, "sh", "-c", `ip addr add ${SRV}/30 dev ${VETH}p && ip link set ${VETH}p up && ip link set lo up`);
  await new Promise((r) => setTimeout(r, 300));
  const spawnServer = spawn("ip", [
    "netns",
    "exec",
    NS,
    "/usr/bin/python3",
    new URL("../tests/fixtures/network/server.py", import.meta.url).pathname,
    SRV,
    "-",
    "-",
    "80:http",
  ], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((r) => spawnServer.stdout!.once("data", () => r()));
  try {
    const direct = JSON.parse(sh("/usr/bin/python3", "-c", CLIENT, SRV, "80", String(N), String(BYTES)));
    await using sb = await Sandbox.create({ network: NetworkPolicy.denyByDefault().allowHttp("api.test").resolveTo("api.test", SRV) });
    const r = await sb.commands.run(["python3", "-c", CLIENT, "api.test", "80", String(N), String(BYTES)], { timeoutSeconds: 600 });
    if (r.exitCode !== 0) throw new Error(r.stderr);
    const proxied = JSON.parse(r.stdout);
    const pids = readdirSync("/proc").filter((d) => {
      try {
        return /^\d+$/.test(d) &&
          /\0mvm-egress\0\d+\0([^\0]*)\0/.exec(readFileSync(`/proc/${d}/cmdline`, "utf8"))?.[1] === `${STATE}/${sb.id}`;
      } catch {
        return false;
      }
    });
    const kb = (pid: string, key: string) =>
      Number(new RegExp(`${key}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"))?.[1]);
    const pss = pids.reduce((a, p) => a + kb(p, "Pss"), 0) / 1024;
    const rss = pids.reduce((a, p) => a + kb(p, "Rss"), 0) / 1024;
    const dirty = pids.reduce((a, p) => a + kb(p, "Private_Dirty"), 0) / 1024;
    const rows = [
      [
        "request latency (new connection each), p50",
        `${pct(proxied.lat, 0.5).toFixed(2)} ms`,
        `${pct(direct.lat, 0.5).toFixed(2)} ms`,
        `+${(pct(proxied.lat, 0.5) - pct(direct.lat, 0.5)).toFixed(2)} ms`,
      ],
      [
        "request latency, p95",
        `${pct(proxied.lat, 0.95).toFixed(2)} ms`,
        `${pct(direct.lat, 0.95).toFixed(2)} ms`,
        `+${(pct(proxied.lat, 0.95) - pct(direct.lat, 0.95)).toFixed(2)} ms`,
      ],
      [
        `throughput, one ${BYTES >> 20} MiB download`,
        `${proxied.mbps.toFixed(0)} MB/s`,
        `${direct.mbps.toFixed(0)} MB/s`,
        `${(proxied.mbps / direct.mbps * 100).toFixed(0)}%`,
      ],
      [
        "host memory of the sandbox's egress proxy (idle)",
        `private dirty ${dirty.toFixed(2)} MB; PSS ${pss.toFixed(2)} MB, RSS ${rss.toFixed(1)} MB`,
        "—",
        "target ≤ 3 MB: private dirty is what each further sandbox adds (Perl's code is shared by every proxy)",
      ],
    ];
    console.log(`egress bench (${N} requests; runtime ${"Bun" in globalThis ? "Bun" : "Deno"})\n`);
    console.log("| measure | through the proxy (sandbox) | direct (host) | difference |\n|---|---|---|---|");
    for (const row of rows) console.log(`| ${row.join(" | ")} |`);
  } finally {
    spawnServer.kill("SIGKILL");
  }
} finally {
  try {
    sh("ip", "link", "del", VETH);
  } catch { /* gone with the namespace */ }
  sh("ip", "netns", "del", NS);
}
