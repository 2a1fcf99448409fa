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
import { readFileSync } from "node:fs";
import process from "node:process";
import { TransportError, UnsupportedError } from "../../errors.ts";
import { type NetworkPolicy, SecretRef } from "../../policy.ts";
import { redact } from "../../redact.ts";
import { type ChildProcess, runtime } from "../../runtime/mod.ts";
import { type ResolvedSecret, resolveSecrets, secretBinding, toHex } from "../../secrets.ts";
import { collectText } from "../../streams.ts";
import { type Tools, which } from "./preflight.ts";
import { GUEST_PATH } from "./runners.ts";
import { ENTER_PL, NETPROXY_PL } from "./scripts.gen.ts";
import { type SandboxDir, trustedDir } from "./state.ts";

const PROXY_URL = "http://198.18.0.1:998";
/** setns(2)'s syscall number per architecture (Node's `process.arch` names). */
const SETNS: Record<string, number> = { x64: 308, arm64: 268, riscv64: 268, loong64: 268, s390x: 339, ppc64: 350 };
/** splice(2)'s, for the proxy's copy-free relay (0: bytes go through Perl). */
const SPLICE: Record<string, number> = { x64: 275, arm64: 76, riscv64: 76, loong64: 76, s390x: 306, ppc64: 283 };

/** Proxy variables every guest process of a networked sandbox gets (transparent interception works without them). */
export const EGRESS_ENV: Readonly<Record<string, string>> = Object.freeze({
  HTTP_PROXY: PROXY_URL,
  HTTPS_PROXY: PROXY_URL,
  http_proxy: PROXY_URL,
  https_proxy: PROXY_URL,
  NO_PROXY: "localhost,127.0.0.1,::1",
  no_proxy: "localhost,127.0.0.1,::1",
});

/** Where a sandbox with bound secrets finds its CA: the system bundle path of its own `/etc` view (the host's is never changed). */
export const GUEST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";

/** The variables that make common clients trust the sandbox's CA (with the system's CAs, in one bundle). */
export const CA_ENV: Readonly<Record<string, string>> = Object.freeze({
  SSL_CERT_FILE: GUEST_CA_BUNDLE,
  NODE_EXTRA_CA_CERTS: GUEST_CA_BUNDLE,
  REQUESTS_CA_BUNDLE: GUEST_CA_BUNDLE,
  CURL_CA_BUNDLE: GUEST_CA_BUNDLE,
  DENO_CERT: GUEST_CA_BUNDLE,
});

/** `openssl` arguments for a self-signed certificate with a fresh EC P-256 key (then `-days`, `-subj`, extensions, outputs). */
export const EC_SELF_SIGNED: readonly string[] = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/** Resolved secrets of the sandboxes this process created or started, for starting their proxy again after stop(). */
const held = new Map<string, ResolvedSecret[]>();

/** The secrets the egress proxy substitutes: those not exposed to the guest and bound to some host. */
export function substituted(secrets: readonly ResolvedSecret[]): ResolvedSecret[] {
  return secrets.filter((s) => !s.exposeToGuest && s.hosts.length > 0);
}

/**
 * Makes the sandbox's own CA on the host (openssl, EC P-256, valid 32 days: longer than any lease)
 * and returns its key and certificate as PEM, plus the bundle the guest trusts (the host's system
 * CAs and this one). The key is written only to the sandbox's state folder, 0600, which the guest
 * cannot reach. @example `const ca = await makeCa("sbx-…", "/usr/bin/perl")`
 */
export async function makeCa(id: string, perl: string): Promise<{ key: string; cert: string; bundle: string }> {
  const openssl = which("openssl");
  if (!openssl) {
    throw new UnsupportedError("secrets bound to hosts need openssl on the host (package openssl) to make the sandbox's CA; install it", {
      details: { field: "secrets" },
    });
  }
  // one Perl step (the program every host-side helper starts from, so scoped Deno permissions hold):
  // it checks Net::SSLeay and IO::Socket::SSL::Utils load (the proxy needs them), runs openssl and appends the system bundle
  const child = await runtime().spawn(perl, [
    "-e",
    MAKE_CA_PL,
    GUEST_CA_BUNDLE,
    openssl,
    ...EC_SELF_SIGNED,
    "-days",
    "32",
    "-subj",
    `/CN=mvm egress CA of sandbox ${id}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE,pathlen:0",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
    "-keyout",
    "-",
    "-out",
    "-",
  ], { clearEnv: true, env: { PATH: GUEST_PATH }, stdout: "piped", stderr: "piped" });
  const [out, err, st] = await Promise.all([collectText(child.stdout!), collectText(child.stderr!), child.status]);
  if (st.code === 3) {
    throw new UnsupportedError(
      "secrets bound to hosts need the Perl modules Net::SSLeay and IO::Socket::SSL::Utils on the host (package libio-socket-ssl-perl): the egress proxy terminates TLS with them",
      { details: { field: "secrets" } },
    );
  }
  if (st.code === 4) {
    throw new UnsupportedError(
      `secrets bound to hosts need the host's CA bundle at ${GUEST_CA_BUNDLE} (package ca-certificates): the sandbox's CA joins it in the sandbox's own view`,
      { details: { field: "secrets" } },
    );
  }
  const [pems = "", system = ""] = out.split("\n#--system-bundle--\n");
  const key = /-----BEGIN PRIVATE KEY-----[^-]+-----END PRIVATE KEY-----\n/.exec(pems)?.[0];
  const cert = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----\n/.exec(pems)?.[0];
  if (st.code !== 0 || !key || !cert || !system.includes("-----BEGIN CERTIFICATE-----")) {
    throw new TransportError(`openssl could not make the sandbox's CA: ${err.trim().split("\n").pop() || `exit ${st.code}`}`);
  }
  return { key, cert, bundle: `${system}${system.endsWith("\n") ? "" : "\n"}# mvm egress CA of sandbox ${id}\n${cert}` };
}

const MAKE_CA_PL = `
eval { require Net::SSLeay; require IO::Socket::SSL::Utils; 1 } or exit 3;
my $bundle = shift @ARGV;
open(my $b, "<", $bundle) or exit 4;
open(my $o, "-|", @ARGV) or exit 5;
local $/;
my $pem = <$o>;
close($o) or exit 6;
print $pem, "\n#--system-bundle--\n", <$b>;
`;

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

/**
 * The proxy's rules file: one `rule HOST PORT`, `pin NAME ADDR…`, `secret PLACEHOLDER TYPE HOST…`,
 * `tls CA_CERT CA_KEY [UPSTREAM_CA]` or `shared SOCKET` (the state root's terminator) per line (never a
 * secret's value). @example `egressConfig(policy)`
 */
export function egressConfig(policy: NetworkPolicy, secrets: readonly ResolvedSecret[] = [], tls: string[] = [], shared?: string): string {
  const lines = policy.rules.map((r) => `rule ${r.host} ${r.port}`);
  for (const [name, addrs] of Object.entries(policy.pins)) lines.push(`pin ${name} ${addrs.join(" ")}`);
  for (const s of substituted(secrets)) lines.push(`secret ${s.placeholder} ${s.type} ${s.hosts.join(" ")}`);
  if (tls.length > 0) lines.push(`tls ${tls.join(" ")}`);
  if (shared) lines.push(`shared ${shared}`);
  return lines.join("\n") + "\n";
}

/** The folder of a state root's shared TLS terminator (its socket and lock), beside `sandboxes/`. @example `terminatorDir("/var/lib/mvm/sandboxes") // "/var/lib/mvm/egress-tls"` */
export function terminatorDir(root: string): string {
  return `${root.replace(/\/sandboxes$/, "")}/egress-tls`;
}

/**
 * Starts the sandbox's egress proxy and waits until its namespace is set up. With secrets to
 * substitute, the CA (made by {@linkcode makeCa} before the sandbox started) is in the state folder,
 * and the bindings (no values) go to `secrets.json` so a later start() can read the values again.
 * @example `await startEgress(t, dir, policy, secrets)`
 */
export async function startEgress(
  t: Tools,
  dir: SandboxDir,
  policy: NetworkPolicy,
  secrets: readonly ResolvedSecret[] = [],
): Promise<void> {
  const sub = substituted(secrets);
  const tls: string[] = [];
  if (sub.length > 0) {
    tls.push(dir.file("ca.crt"), dir.file("ca.key"));
    if (policy.upstreamCa.length > 0) {
      dir.write("upstream-ca.crt", policy.upstreamCa.join(""));
      tls.push(dir.file("upstream-ca.crt"));
    }
    dir.write("secrets.json", JSON.stringify(sub.map(secretBinding)));
    held.set(dir.id, sub);
  }
  dir.write("egress.conf", egressConfig(policy, sub, tls, sub.length > 0 ? `${terminatorDir(dir.root)}/sock` : undefined));
  await launchEgress(t, dir);
}

/**
 * The values the proxy of a sandbox needs: those this process resolved, else read again from their
 * sources (an environment variable or a file; a resolver function lives only in the process that
 * created the sandbox, which must then be the one to start() it).
 */
async function heldSecrets(dir: SandboxDir): Promise<ResolvedSecret[]> {
  const mine = held.get(dir.id);
  if (mine) return mine;
  let bindings: Omit<ResolvedSecret, "value">[];
  try {
    bindings = JSON.parse(readFileSync(dir.file("secrets.json"), "utf8"));
  } catch {
    return [];
  }
  const out: ResolvedSecret[] = [];
  for (const b of bindings) {
    if (b.source === "resolver") {
      throw new UnsupportedError(
        `sandbox ${dir.id}: secret ${JSON.stringify(b.name)} came from a resolver function of the process that created it; ` +
          `start() the sandbox from that process, or bind the secret to an environment variable or a file`,
        { details: { id: dir.id, secret: b.name } },
      );
    }
    const from = b.source.startsWith("env:") ? { env: b.source.slice(4) } : { file: b.source.slice(5) };
    const [r] = await resolveSecrets({ [b.key]: SecretRef.from(b.name, { hosts: b.hosts, type: b.type, from }) }, b.hosts);
    out.push({ ...r!, placeholder: b.placeholder, hosts: b.hosts });
  }
  held.set(dir.id, out);
  return out;
}

/** Forgets the values this process holds for a sandbox (at destroy). @example `forgetSecrets(id)` */
export function forgetSecrets(id: string): void {
  held.delete(id);
}

/**
 * Starts the egress proxy for the sandbox's current init from its `egress.conf` (at create, and when
 * a stopped sandbox starts again in a fresh jail). @example `await launchEgress(t, dir)`
 */
export async function launchEgress(t: Tools, dir: SandboxDir): Promise<void> {
  const { nft, ip } = egressTools(t);
  const secrets = await heldSecrets(dir);
  const setns = SETNS[process.arch];
  if (!setns) {
    throw new UnsupportedError(`egress does not know setns(2)'s number on ${process.arch} yet`, { details: { field: "network" } });
  }
  const init = dir.readPids().init;
  if (!init) throw new TransportError(`sandbox ${dir.id} has no init to give a network to`, { details: { id: dir.id } });
  if (secrets.length > 0) await startTerminator(t, dir.root);
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
    String(SPLICE[process.arch] ?? 0),
  ], { clearEnv: true, env: { PATH: GUEST_PATH }, stdin: "piped", stdout: "piped", stderr: "null" });
  // the values go through the proxy's stdin (a pipe only it holds), never its argv or environment
  const w = child.stdin!.getWriter();
  const lines = secrets.map((s) => `${s.placeholder} ${toHex(new TextEncoder().encode(s.value))}\n`).join("");
  await w.write(new TextEncoder().encode(lines)).catch(() => {});
  await w.close().catch(() => {});
  const line = await readyLine(child, "the egress proxy");
  if (!line.startsWith("ready ")) {
    child.kill("SIGKILL");
    throw new TransportError(`the sandbox's egress proxy failed to start: ${redact(line.replace(/^error /, "")) || "no reason given"}`, {
      details: { id: dir.id },
    });
  }
}

/**
 * Makes sure the state root's shared TLS terminator runs (the proxy program in its `mvm-tls` role, in a
 * session of its own like the proxies; it ends 10 s after its last proxy): one per state root, by a lock
 * it holds, so this is a no-op when one runs. Its socket is 0600 in a 0700 folder of the state root,
 * which no sandbox can see. A proxy that cannot reach it terminates TLS itself, so a failure here is not fatal.
 * @example `await startTerminator(t, "/var/lib/mvm/sandboxes")`
 */
export async function startTerminator(t: Tools, root: string): Promise<void> {
  const folder = terminatorDir(root);
  trustedDir(folder, t.uid, 0o700);
  const child = await runtime().spawn(t.perl, ["-e", ENTER_PL, String(t.keyctl), t.setsid, t.perl, "-e", NETPROXY_PL, "mvm-tls", folder], {
    clearEnv: true,
    env: { PATH: GUEST_PATH },
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  });
  await readyLine(child, "the shared TLS terminator");
}

/** The first `ready …`/`running`/`error …` line of a starting helper (at most 10 s), after which it is let go. */
async function readyLine(child: ChildProcess, what: string): Promise<string> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const text = await Promise.race([
    collectText(child.stdout!),
    new Promise<string>((r) => timer = setTimeout(() => r(`error ${what} did not start within 10 s`), 10_000)),
  ]).finally(() => clearTimeout(timer));
  child.unref();
  return text.split("\n").find((l) => /^(ready |running$|error )/.test(l)) ?? text.trim();
}
