/**
 * Egress for a sandbox whose `NetworkPolicy` allows hosts: the host-side proxy of `sh/netproxy.pl`,
 * one per networked sandbox, started once the sandbox is up. It sets the sandbox's network
 * namespace up (DNS stand-in addresses, nftables redirect, fail-fast refusal of everything else),
 * then relays only what the policy allows to addresses it resolved and checked on the host. It
 * runs in its own session (so it outlives a client that dies, as a detached sandbox must) and ends
 * by itself within a second of the sandbox's init.
 *
 * @example
 * ```ts
 * import { EGRESS_ENV } from "./network.ts";
 * console.log(EGRESS_ENV.HTTPS_PROXY); // "http://198.18.0.1:998"
 * ```
 * @module
 */
import process from "node:process";
import { TransportError, UnsupportedError } from "../../errors.ts";
import type { NetworkPolicy } from "../../policy.ts";
import { runtime } from "../../runtime/mod.ts";
import { collectText } from "../../streams.ts";
import { type Tools, which } from "./preflight.ts";
import { GUEST_PATH } from "./runners.ts";
import { ENTER_PL, NETPROXY_PL } from "./scripts.gen.ts";
import type { SandboxDir } from "./state.ts";

const PROXY_URL = "http://198.18.0.1:998";
/** setns(2)'s syscall number per architecture (Node's `process.arch` names). */
const SETNS: Record<string, number> = { x64: 308, arm64: 268, riscv64: 268, loong64: 268, s390x: 339, ppc64: 350 };

/** Proxy variables every guest process of a networked sandbox gets (transparent interception works without them). */
export const EGRESS_ENV: Readonly<Record<string, string>> = Object.freeze({
  HTTP_PROXY: PROXY_URL,
  HTTPS_PROXY: PROXY_URL,
  http_proxy: PROXY_URL,
  https_proxy: PROXY_URL,
  NO_PROXY: "localhost,127.0.0.1,::1",
  no_proxy: "localhost,127.0.0.1,::1",
});

/** The host tools egress needs, or an `UnsupportedError` that says what is missing. @example `egressTools(t)` */
export function egressTools(t: Tools): { nft: string; ip: string } {
  if (t.uid !== 0) {
    throw new UnsupportedError(
      "egress (a NetworkPolicy that allows hosts) needs the local engine to run as root: its proxy sets up the sandbox's network namespace from the host. Run as root, or use NetworkPolicy.denyByDefault() alone.",
      { details: { field: "network" } },
    );
  }
  const nft = which("nft");
  const ip = which("ip");
  if (!nft || !ip) {
    throw new UnsupportedError(
      `egress needs ${
        [!nft && "nft (package nftables)", !ip && "ip (package iproute2)"].filter(Boolean).join(" and ")
      } on the host; install it, or use NetworkPolicy.denyByDefault() alone`,
      { details: { field: "network" } },
    );
  }
  return { nft, ip };
}

/** The proxy's rules file: one `rule HOST PORT` or `pin NAME ADDR…` per line. @example `egressConfig(policy)` */
export function egressConfig(policy: NetworkPolicy): string {
  const lines = policy.rules.map((r) => `rule ${r.host} ${r.port}`);
  for (const [name, addrs] of Object.entries(policy.pins)) lines.push(`pin ${name} ${addrs.join(" ")}`);
  return lines.join("\n") + "\n";
}

/** Starts the sandbox's egress proxy and waits until its namespace is set up. @example `await startEgress(t, dir, policy)` */
export async function startEgress(t: Tools, dir: SandboxDir, policy: NetworkPolicy): Promise<void> {
  dir.write("egress.conf", egressConfig(policy));
  await launchEgress(t, dir);
}

/**
 * Starts the egress proxy for the sandbox's current init from its `egress.conf` (at create, and when
 * a stopped sandbox starts again in a fresh jail). @example `await launchEgress(t, dir)`
 */
export async function launchEgress(t: Tools, dir: SandboxDir): Promise<void> {
  const { nft, ip } = egressTools(t);
  const setns = SETNS[process.arch];
  if (!setns) {
    throw new UnsupportedError(`egress does not know setns(2)'s number on ${process.arch} yet`, { details: { field: "network" } });
  }
  const init = dir.readPids().init;
  if (!init) throw new TransportError(`sandbox ${dir.id} has no init to give a network to`, { details: { id: dir.id } });
  const child = await runtime().spawn(t.perl, [
    "-e",
    ENTER_PL,
    String(t.keyctl),
    t.setsid,
    t.perl,
    "-e",
    NETPROXY_PL,
    "mvm-egress",
    String(setns),
    dir.path,
    String(init.pid),
    init.start,
    dir.file("egress.conf"),
    nft,
    ip,
  ], { clearEnv: true, env: { PATH: GUEST_PATH }, stdin: "null", stdout: "piped", stderr: "null" });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const text = await Promise.race([
    collectText(child.stdout!),
    new Promise<string>((r) => timer = setTimeout(() => r("error the egress proxy did not start within 10 s"), 10_000)),
  ]).finally(() => clearTimeout(timer));
  child.unref();
  const line = text.split("\n").find((l) => l.startsWith("ready ") || l.startsWith("error ")) ?? text.trim();
  if (!line.startsWith("ready ")) {
    child.kill("SIGKILL");
    throw new TransportError(`the sandbox's egress proxy failed to start: ${line.replace(/^error /, "") || "no reason given"}`, {
      details: { id: dir.id },
    });
  }
}
