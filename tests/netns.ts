/**
 * A test server network for the egress suites: a network namespace of the test's own, reached over
 * a veth pair with private addresses on this machine (10.213.N.2 the server, 10.213.N.1 the host's
 * end), running tests/fixtures/network/server.py on 80 and 8080 (HTTP) and 443 (HTTPS, a self-signed
 * certificate for api.test, a.wild.test, other.test and plain.test), plus two services of the host
 * itself (its loopback and the veth's host end). Nothing here ever targets an address outside this machine.
 *
 * @example
 * ```ts
 * import { startTestNet } from "./netns.ts";
 * const net = await startTestNet();
 * try { console.log(net.srv); } finally { net.stop(); }
 * ```
 * @module
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import process from "node:process";
import { EC_SELF_SIGNED } from "../src/engines/local/network.ts";
import { pidExists } from "../src/runtime/host.ts";

/** A running test server network. */
export interface TestNet {
  /** The server's address (in the namespace). */
  srv: string;
  /** The host's end of the veth pair (one of the host's own addresses). */
  hostEnd: string;
  /** The server's certificate (PEM), its own CA. */
  ca: string;
  /** Ports of the host's services: [on 127.0.0.1, on hostEnd]. */
  hostPorts: number[];
  /** Removes the namespace, the veth pair and the servers. */
  stop(): void;
}

const sh = (...argv: string[]) => execFileSync(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] }).toString();

/**
 * Claims a 10.213.N.0/30 no interface of this host has and no other test process holds (suites of two
 * runtimes run at once): a folder per N under the temp dir, naming its owner's pid; a dead owner's claim is
 * dropped. @example `const { n, release } = claimSubnet()`
 */
export function claimSubnet(): { n: number; release: () => void } {
  const used = new Set([...sh("ip", "-o", "-4", "addr", "show").matchAll(/ 10\.213\.(\d+)\./g)].map((m) => Number(m[1])));
  const root = `${tmpdir()}/mvm-test-subnets`;
  mkdirSync(root, { recursive: true });
  for (let tries = 0; tries < 1000; tries++) {
    const n = 1 + Math.floor(Math.random() * 250);
    if (used.has(n)) continue;
    const dir = `${root}/${n}`;
    try {
      mkdirSync(dir);
    } catch {
      let owner = 0;
      try {
        owner = Number(readFileSync(`${dir}/pid`, "utf8"));
      } catch { /* being claimed */ }
      if (owner > 0 && !pidExists(owner)) rmSync(dir, { recursive: true, force: true });
      continue;
    }
    writeFileSync(`${dir}/pid`, String(process.pid));
    return { n, release: () => rmSync(dir, { recursive: true, force: true }) };
  }
  throw new Error("no free 10.213.N.0/30 for a test network");
}

/** Starts the namespace, its server and the host's services. @example `const net = await startTestNet()` */
export async function startTestNet(): Promise<TestNet> {
  const { n, release } = claimSubnet();
  const ns = `mvmt-${process.pid}-${n}`;
  const veth = `mvt${n}h${process.pid % 1000}`;
  const srv = `10.213.${n}.2`;
  const hostEnd = `10.213.${n}.1`;
  const tmp = mkdtempSync(`${tmpdir()}/mvm-net-test-`);
  let server: ReturnType<typeof spawn> | undefined;
  const hostServices: Server[] = [];
  const hostPorts: number[] = [];
  const stop = () => {
    server?.kill("SIGKILL");
    for (const s of hostServices) s.close();
    try {
      sh("ip", "link", "del", veth);
    } catch { /* gone with the namespace */ }
    try {
      sh("ip", "netns", "del", ns);
    } catch { /* never made */ }
    rmSync(tmp, { recursive: true, force: true });
    release();
  };
  try {
    sh("ip", "netns", "add", ns);
    sh("ip", "link", "add", veth, "type", "veth", "peer", "name", `${veth}p`);
    sh("ip", "link", "set", `${veth}p`, "netns", ns);
    sh("ip", "addr", "add", `${hostEnd}/30`, "dev", veth);
    sh("ip", "link", "set", veth, "up");
    sh("ip", "netns", "exec", ns, "sh", "-c", `ip addr add ${srv}/30 dev ${veth}p && ip link set ${veth}p up && ip link set lo up`);
    sh(
      "openssl",
      ...EC_SELF_SIGNED,
      "-days",
      "1",
      "-subj",
      "/CN=api.test",
      "-addext",
      "subjectAltName=DNS:api.test,DNS:a.wild.test,DNS:other.test,DNS:plain.test",
      "-keyout",
      `${tmp}/key.pem`,
      "-out",
      `${tmp}/cert.pem`,
    );
    const ca = readFileSync(`${tmp}/cert.pem`, "utf8");
    const script = new URL("./fixtures/network/server.py", import.meta.url).pathname;
    server = spawn(
      "ip",
      ["netns", "exec", ns, "/usr/bin/python3", script, srv, `${tmp}/cert.pem`, `${tmp}/key.pem`, "80:http", "443:https", "8080:http"],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    await new Promise<void>((resolve, reject) => {
      server!.stdout!.once("data", () => resolve());
      server!.once("exit", (c) => reject(new Error(`test server exited ${c}`)));
    });
    for (const addr of ["127.0.0.1", hostEnd]) {
      const s = createServer((c) => c.end("host-service\n"));
      await new Promise<void>((r) => s.listen(0, addr, r));
      hostServices.push(s);
      hostPorts.push((s.address() as { port: number }).port);
    }
    return { srv, hostEnd, ca, hostPorts, stop };
  } catch (e) {
    stop();
    throw e;
  }
}
