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
 * const secrets = { OPENAI_API_KEY: SecretRef.from("openai-api-key") };
 * assert.deepEqual(network.hosts, ["api.openai.com"]);
 * assert.equal(secrets.OPENAI_API_KEY.placeholder, "mvm-secret:openai-api-key");
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
  private constructor(rules: EgressRule[], pins: ReadonlyMap<string, readonly string[]>) {
    this.#rules = rules;
    this.#pins = pins;
  }
  /** A policy that allows nothing (the default of every sandbox). @example `NetworkPolicy.denyByDefault()` */
  static denyByDefault(): NetworkPolicy {
    return new NetworkPolicy([], new Map());
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
    return new NetworkPolicy([...this.#rules, { host: h, port: p }], this.#pins);
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
    return new NetworkPolicy(this.#rules, pins);
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
 * A reference to a secret held outside the sandbox. The guest only ever sees
 * an opaque placeholder; the value is never read by the SDK.
 *
 * @example A secret bound to one host
 * ```ts
 * import assert from "node:assert/strict";
 * import { SecretRef } from "@mvm/sdk";
 *
 * const key = SecretRef.from("openai-api-key", { hosts: ["api.openai.com"], type: "bearer" });
 * assert.equal(key.placeholder, "mvm-secret:openai-api-key");
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
  private constructor(name: string, hosts: string[], type: SecretAuthType) {
    this.name = name;
    this.hosts = hosts;
    this.type = type;
    Object.freeze(this);
  }
  /** A reference by name. @example `SecretRef.from("openai-api-key")` */
  static from(name: string, options: { hosts?: string[]; type?: SecretAuthType } = {}): SecretRef {
    if (typeof name !== "string" || !SECRET_NAME_RE.test(name)) {
      throw invalid("secret.name", "must be 1-128 characters of letters, digits, '.', '_', '-' or '/', starting with a letter or digit");
    }
    const hosts = (options.hosts ?? []).map((h, i) => checkHost(`secret.hosts[${i}]`, h));
    const type = options.type ?? "bearer";
    if (!AUTH_TYPES.includes(type)) throw invalid("secret.type", `must be one of ${AUTH_TYPES.join(", ")}`);
    return new SecretRef(name, hosts, type);
  }
  /** The value the guest sees in place of the secret. @example `ref.placeholder // "mvm-secret:openai-api-key"` */
  get placeholder(): string {
    return `mvm-secret:${this.name}`;
  }
  /** A reference never prints a value (it has none). @example `String(ref)` */
  toString(): string {
    return `SecretRef(${this.name})`;
  }
}
