/**
 * Network policy and secret references: the two policies a sandbox is
 * created with. Both are data: engines enforce them outside the guest.
 *
 * @example An allowlist and a secret for one API
 * ```ts
 * import assert from "node:assert/strict";
 * import { NetworkPolicy, SecretRef } from "@mvm/sdk";
 *
 * const network = NetworkPolicy.denyByDefault().allowHttps("api.openai.com");
 * const secrets = { OPENAI_API_KEY: SecretRef.from("openai-api-key") }; // read from $OPENAI_API_KEY at create
 * assert.deepEqual(network.hosts, ["api.openai.com"]);
 * assert.deepEqual(secrets.OPENAI_API_KEY.from, { env: "OPENAI_API_KEY" });
 * ```
 * @module
 */
import { invalid, InvalidInputError } from "./errors.ts";
import { classifyAddress, parseIPv4 } from "./network/addresses.ts";

/**
 * One allowed egress destination.
 *
 * @example The rules of a policy
 * ```ts
 * import assert from "node:assert/strict";
 * import { type EgressRule, NetworkPolicy } from "@mvm/sdk";
 *
 * const rules: readonly EgressRule[] = NetworkPolicy.denyByDefault().allow("DB.internal", 5432).rules;
 * assert.deepEqual(rules, [{ host: "db.internal", port: 5432 }]);
 * ```
 */
export interface EgressRule {
  /** The host name (lower case), `*.suffix` (every subdomain of `suffix`, not `suffix` itself), or an IPv4 address. */
  host: string;
  /** The TCP port, 1-65535. */
  port: number;
}

const HOST_RE = /^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

function refuse(field: string, code: string, message: string): InvalidInputError {
  return new InvalidInputError(`${field}: ${message} (${code})`, { details: { field, code } });
}

/**
 * Validates a host for an allowlist: a DNS name, `*.suffix`, or an IPv4 address that is not on
 * upstream's never-reachable list. `*`, `0.0.0.0`, `::`, an empty host and anything with `/0` are
 * `E_NETWORK_WILDCARD`; a restricted address (loopback, link-local, metadata, `0/8`, `100.64/10`)
 * is `E_NETWORK_RESTRICTED`. @example `checkHost("network.allow.host", "API.example.com") // "api.example.com"`
 */
export function checkHost(field: string, host: unknown): string {
  if (typeof host !== "string") throw invalid(field, "must be a host name string");
  const h = host.trim().toLowerCase();
  if (h === "" || h === "*" || h === "0.0.0.0" || h === "::" || h === "[::]" || h.includes("/0") || h === "*.") {
    throw refuse(field, "E_NETWORK_WILDCARD", `${JSON.stringify(host)} would allow every destination; name each host exactly`);
  }
  if (h.includes("/")) throw invalid(field, `not a host: ${JSON.stringify(host)} (no CIDR ranges, schemes or paths)`);
  const cls = classifyAddress(h);
  if (cls !== null) {
    if (parseIPv4(h) === null) {
      throw invalid(
        field,
        `IPv6 literals are not supported by egress rules yet: ${JSON.stringify(host)}; allow a host name or an IPv4 address`,
      );
    }
    if (cls === "restricted") {
      throw refuse(
        field,
        "E_NETWORK_RESTRICTED",
        `${h} is never reachable from a sandbox (loopback, link-local, metadata, 0/8 or 100.64/10)`,
      );
    }
    return h;
  }
  const name = h.startsWith("*.") ? h.slice(2) : h;
  if (name.includes("*")) throw refuse(field, "E_NETWORK_WILDCARD", `only a leading "*." is allowed: ${JSON.stringify(host)}`);
  if (!HOST_RE.test(name) || /^[\d.]+$/.test(name)) {
    throw invalid(field, `not a valid host name: ${JSON.stringify(host)} (no scheme, port or path)`);
  }
  return h;
}

function checkPort(field: string, port: unknown): number {
  if (port === 0) throw refuse(field, "E_NETWORK_INVALID_PORT", "port 0 is not a destination; use 1-65535");
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw refuse(field, "E_NETWORK_INVALID_PORT", `must be an integer 1-65535, got ${String(port)}`);
  }
  return port;
}

/**
 * Whether `name` (lower case) is covered by the allowlist host `rule`: exactly, or as a subdomain
 * of a `*.suffix` rule (the apex is not). @example `hostMatches("*.example.com", "api.example.com") // true`
 */
export function hostMatches(rule: string, name: string): boolean {
  return rule.startsWith("*.") ? name.endsWith(rule.slice(1)) && name.length > rule.length - 1 : rule === name;
}

/**
 * Egress policy of a sandbox: deny everything, then allow host:port pairs. Each `allow` returns a
 * new policy. Names resolve on the host when a connection is made, and the connection goes to the
 * address that was checked; addresses on upstream's never-reachable list (loopback, link-local,
 * metadata, `0/8`, `100.64/10`, and IPv4 embedded in NAT64/6to4/Teredo) are refused even when a name
 * resolves to them, and private ranges (RFC 1918, ULA, multicast, `240/4`) only when a rule names the
 * address itself or `resolveTo` pins a name to it.
 *
 * @example Building an allowlist
 * ```ts
 * import assert from "node:assert/strict";
 * import { InvalidInputError, NetworkPolicy } from "@mvm/sdk";
 *
 * const p = NetworkPolicy.denyByDefault().allowHttps("api.openai.com").allow("db.internal:5432").allowHttp("*.example.com");
 * assert.deepEqual(p.rules, [
 *   { host: "api.openai.com", port: 443 },
 *   { host: "db.internal", port: 5432 },
 *   { host: "*.example.com", port: 80 },
 * ]);
 * assert.throws(() => p.allowHttps("*"), (e: InvalidInputError) => e.details.code === "E_NETWORK_WILDCARD");
 * assert.throws(() => p.allow("169.254.169.254", 80), InvalidInputError);
 * ```
 */
export class NetworkPolicy {
  readonly #rules: EgressRule[];
  readonly #pins: ReadonlyMap<string, readonly string[]>;
  readonly #cas: readonly string[];
  private constructor(rules: EgressRule[], pins: ReadonlyMap<string, readonly string[]>, cas: readonly string[] = []) {
    this.#rules = rules;
    this.#pins = pins;
    this.#cas = cas;
  }
  /** A policy that allows nothing (the default of every sandbox). @example `NetworkPolicy.denyByDefault()` */
  static denyByDefault(): NetworkPolicy {
    return new NetworkPolicy([], new Map());
  }
  /**
   * A new policy whose egress proxy also trusts `pem` (one or more PEM certificates) when it verifies
   * the servers of hosts a secret is bound to, besides the host's system CAs: for private CAs and
   * test servers. It never weakens verification: the name must still match, and nothing is trusted
   * unless given here explicitly.
   * @example `NetworkPolicy.denyByDefault().allowHttps("api.internal").withUpstreamCa(readFileSync("corp-ca.pem", "utf8"))`
   */
  withUpstreamCa(pem: string): NetworkPolicy {
    if (typeof pem !== "string" || !/^(-----BEGIN CERTIFICATE-----\s+[A-Za-z0-9+\/=\s]+-----END CERTIFICATE-----\s*)+$/.test(pem.trim())) {
      throw invalid("network.upstreamCa", "must be PEM certificates (-----BEGIN CERTIFICATE----- …)");
    }
    const one = pem.trim().replace(/\r\n/g, "\n") + "\n";
    return new NetworkPolicy([...this.#rules], this.#pins, [...this.#cas, one]);
  }
  /** The extra CAs the proxy trusts for upstream servers (PEM), see `withUpstreamCa`. @example `p.upstreamCa.length` */
  get upstreamCa(): string[] {
    return [...this.#cas];
  }
  /** A new policy that also allows HTTPS (port 443) to `host`. @example `p.allowHttps("api.github.com")` */
  allowHttps(host: string): NetworkPolicy {
    return this.allow(host, 443);
  }
  /** A new policy that also allows plain HTTP to `host` (port 80 unless given). @example `p.allowHttp("example.com", 8080)` */
  allowHttp(host: string, port = 80): NetworkPolicy {
    return this.allow(host, port);
  }
  /**
   * A new policy that also allows TCP to `host:port` (one `"host:port"` string, or the two apart).
   * @example `p.allow("pypi.org", 443); p.allow("db.internal:5432")`
   */
  allow(host: string, port?: number): NetworkPolicy {
    if (port === undefined) {
      const m = typeof host === "string" ? /^(.*):(\d{1,5})$/.exec(host) : null;
      if (!m) throw refuse("network.allow", "E_NETWORK_INVALID_PORT", `${JSON.stringify(host)} names no port; write "host:port"`);
      return this.allow(m[1]!, Number(m[2]));
    }
    const h = checkHost("network.allow.host", host);
    const p = checkPort("network.allow.port", port);
    if (this.#rules.some((r) => r.host === h && r.port === p)) return this;
    return new NetworkPolicy([...this.#rules, { host: h, port: p }], this.#pins, this.#cas);
  }
  /**
   * A new policy in which `host` resolves to `addresses` instead of through the host's DNS: for
   * split-horizon names and tests. Pinned private addresses count as named exactly; restricted ones
   * are refused here. It allows nothing by itself.
   * @example `NetworkPolicy.denyByDefault().allowHttps("api.test").resolveTo("api.test", "10.0.0.2")`
   */
  resolveTo(host: string, ...addresses: string[]): NetworkPolicy {
    const h = checkHost("network.resolveTo.host", host);
    if (h.startsWith("*.") || parseIPv4(h)) throw invalid("network.resolveTo.host", "must be a host name, not a pattern or an address");
    if (addresses.length === 0 || addresses.length > 16) throw invalid("network.resolveTo.addresses", "give 1 to 16 IPv4 addresses");
    for (const [i, a] of addresses.entries()) {
      if (typeof a !== "string" || parseIPv4(a) === null) {
        throw invalid(`network.resolveTo.addresses[${i}]`, `not an IPv4 address: ${String(a)}`);
      }
      if (classifyAddress(a) === "restricted") {
        throw refuse(`network.resolveTo.addresses[${i}]`, "E_NETWORK_RESTRICTED", `${a} is never reachable from a sandbox`);
      }
    }
    const pins = new Map(this.#pins);
    pins.set(h, [...addresses]);
    return new NetworkPolicy(this.#rules, pins, this.#cas);
  }
  /** The allowed destinations, in the order they were added. @example `p.rules.length` */
  get rules(): readonly EgressRule[] {
    return [...this.#rules];
  }
  /** The distinct hosts allowed. @example `p.hosts // ["api.openai.com"]` */
  get hosts(): string[] {
    return [...new Set(this.#rules.map((r) => r.host))];
  }
  /** Names pinned with `resolveTo`, and their addresses. @example `p.pins // { "api.test": ["10.0.0.2"] }` */
  get pins(): Record<string, string[]> {
    return Object.fromEntries([...this.#pins].map(([k, v]) => [k, [...v]]));
  }
  /** JSON form (no secrets in it). @example `JSON.stringify(p)` */
  toJSON(): { mode: "none" | "bridge"; egress?: { allowlist: EgressRule[] } } {
    return this.#rules.length === 0 ? { mode: "none" } : { mode: "bridge", egress: { allowlist: this.rules as EgressRule[] } };
  }
}

/**
 * How a secret is presented to its hosts: a bearer token, HTTP basic auth,
 * an HMAC signature or AWS SigV4.
 *
 * @example The default is bearer
 * ```ts
 * import assert from "node:assert/strict";
 * import { type SecretAuthType, SecretRef } from "@mvm/sdk";
 *
 * const type: SecretAuthType = SecretRef.from("github-token").type;
 * assert.equal(type, "bearer");
 * ```
 */
export type SecretAuthType = "bearer" | "basic" | "hmac" | "sigv4";
const AUTH_TYPES: readonly SecretAuthType[] = ["bearer", "basic", "hmac", "sigv4"];
const SECRET_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._\/-]{0,127}$/;

/**
 * Where the host reads a secret's value when a sandbox is created: an environment variable of the
 * creating process, a file, or a function of the caller's (given the secret's name; it may be async,
 * e.g. a vault lookup). The value is read once per create, before any process of the sandbox starts.
 *
 * @example The three sources
 * ```ts
 * import type { SecretSource } from "@mvm/sdk";
 *
 * const fromEnv: SecretSource = { env: "OPENAI_API_KEY" };
 * const fromFile: SecretSource = { file: "/run/secrets/openai" };
 * const fromVault: SecretSource = async (name) => `value of ${name}`;
 * console.log(fromEnv, fromFile, typeof fromVault);
 * ```
 */
export type SecretSource = { env: string } | { file: string } | ((name: string) => string | Promise<string>);

/**
 * How a secret is bound: its hosts, how it is presented, where its value comes from, and whether the
 * guest may see it.
 *
 * @example A bearer token from a file, for one API
 * ```ts
 * import { SecretRef, type SecretRefOptions } from "@mvm/sdk";
 *
 * const options: SecretRefOptions = { hosts: ["api.openai.com"], type: "bearer", from: { file: "/run/secrets/openai" } };
 * console.log(String(SecretRef.from("openai-api-key", options))); // "SecretRef(openai-api-key)"
 * ```
 */
export interface SecretRefOptions {
  /** Hosts the value may be sent to (names, `*.suffix`); empty or omitted: the sandbox's allowlisted hosts. */
  hosts?: string[] | undefined;
  /** `"bearer"` (default) or `"basic"`; `"hmac"` and `"sigv4"` are recorded, and refused by the local engine. */
  type?: SecretAuthType | undefined;
  /** Where the value is read at create; default: the environment variable named like the secret (upper case, `_` for other characters). */
  from?: SecretSource | undefined;
  /** Pass the real value into the guest's environment instead of a placeholder. The guest can then leak it: only for values it must hold. */
  exposeToGuest?: boolean | undefined;
}

/**
 * A reference to a secret held outside the sandbox. The guest sees a placeholder
 * (`mvm-secret-` and 48 hex digits, fresh for each sandbox) in its environment; the egress proxy
 * swaps it for the real value only in requests to the hosts the secret is bound to. The value is
 * read on the host at create, from `from` (default: an environment variable named like the
 * secret), and never written to the sandbox's state, logs or errors.
 *
 * @example A secret bound to one host
 * ```ts
 * import assert from "node:assert/strict";
 * import { SecretRef } from "@mvm/sdk";
 *
 * const key = SecretRef.from("openai-api-key", { hosts: ["api.openai.com"], type: "bearer" });
 * assert.deepEqual(key.from, { env: "OPENAI_API_KEY" });
 * assert.equal(key.exposeToGuest, false);
 * assert.equal(String(key), "SecretRef(openai-api-key)");
 * ```
 */
export class SecretRef {
  /** The secret's name in the host's secret store. */
  readonly name: string;
  /** Hosts the secret may be sent to; empty means "the sandbox's allowlisted hosts". */
  readonly hosts: readonly string[];
  /** How the egress boundary presents it. */
  readonly type: SecretAuthType;
  /** Where its value is read at create. */
  readonly from: SecretSource;
  /** Whether the guest gets the real value (an explicit opt-in) instead of a placeholder. */
  readonly exposeToGuest: boolean;
  private constructor(name: string, hosts: string[], type: SecretAuthType, from: SecretSource, exposeToGuest: boolean) {
    this.name = name;
    this.hosts = hosts;
    this.type = type;
    this.from = from;
    this.exposeToGuest = exposeToGuest;
    Object.freeze(this);
  }
  /**
   * A reference by name. @example `SecretRef.from("openai-api-key")`, `SecretRef.from("gh", { hosts: ["api.github.com"], from: { env: "GH_TOKEN" } })`
   */
  static from(name: string, options: SecretRefOptions = {}): SecretRef {
    if (typeof name !== "string" || !SECRET_NAME_RE.test(name)) {
      throw invalid("secret.name", "must be 1-128 characters of letters, digits, '.', '_', '-' or '/', starting with a letter or digit");
    }
    if (options === null || typeof options !== "object") throw invalid("secret.options", "must be an object");
    const hosts = (options.hosts ?? []).map((h, i) => checkHost(`secret.hosts[${i}]`, h));
    const type = options.type ?? "bearer";
    if (!AUTH_TYPES.includes(type)) throw invalid("secret.type", `must be one of ${AUTH_TYPES.join(", ")}`);
    const from = options.from ?? { env: name.toUpperCase().replace(/[^A-Z0-9_]/g, "_") };
    if (typeof from === "function") { /* a resolver of the caller's */ }
    else if (from === null || typeof from !== "object") {
      throw invalid("secret.from", 'must be { env: "NAME" }, { file: "/path" } or a function (name) => value');
    } else if ("env" in from) {
      if (typeof from.env !== "string" || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(from.env)) {
        throw invalid("secret.from.env", "must be an environment variable name");
      }
    } else if ("file" in from) {
      if (typeof from.file !== "string" || !from.file.startsWith("/")) throw invalid("secret.from.file", "must be an absolute path");
    } else throw invalid("secret.from", 'must be { env: "NAME" }, { file: "/path" } or a function (name) => value');
    if (options.exposeToGuest !== undefined && typeof options.exposeToGuest !== "boolean") {
      throw invalid("secret.exposeToGuest", "must be true or false");
    }
    return new SecretRef(name, hosts, type, typeof from === "function" ? from : { ...from }, options.exposeToGuest === true);
  }
  /** A reference never prints a value (it holds none). @example `String(ref)` */
  toString(): string {
    return `SecretRef(${this.name})`;
  }
  /** JSON form: the name, hosts, type and where the value comes from; never a value. @example `JSON.stringify(ref)` */
  toJSON(): { name: string; hosts: string[]; type: SecretAuthType; from: string; exposeToGuest: boolean } {
    const f = this.from;
    const from = typeof f === "function" ? "resolver" : "env" in f ? `env:${f.env}` : `file:${f.file}`;
    return { name: this.name, hosts: [...this.hosts], type: this.type, from, exposeToGuest: this.exposeToGuest };
  }
}
