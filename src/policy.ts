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
import { invalid } from "./errors.ts";

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
  /** The host name (lower case) or IPv4 address. */
  host: string;
  /** The TCP port, 1-65535. */
  port: number;
}

const HOST_RE = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;
const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Validates a host name for an allowlist: no wildcards, no schemes, no ports. */
export function checkHost(field: string, host: unknown): string {
  if (typeof host !== "string" || host.length === 0) throw invalid(field, "must be a non-empty host name string");
  if (host.includes("*")) {
    throw invalid(field, `wildcard hosts are refused (E_NETWORK_WILDCARD): ${JSON.stringify(host)}; name each host exactly`);
  }
  const h = host.toLowerCase();
  const v4 = IPV4_RE.exec(h);
  if (v4) {
    if (v4.slice(1).some((o) => Number(o) > 255)) throw invalid(field, `not an IPv4 address: ${host}`);
    return h;
  }
  if (!HOST_RE.test(h)) throw invalid(field, `not a valid host name: ${JSON.stringify(host)} (no scheme, port or path)`);
  return h;
}

/**
 * Egress policy of a sandbox: deny everything, then allow exact host:port
 * pairs. Each `allow` returns a new policy; wildcards are refused. The local
 * engine has no network at all and refuses a policy that allows hosts with
 * `UNSUPPORTED` until egress lands.
 *
 * @example Building an allowlist
 * ```ts
 * import assert from "node:assert/strict";
 * import { InvalidInputError, NetworkPolicy } from "@mvm/sdk";
 *
 * const p = NetworkPolicy.denyByDefault().allowHttps("api.openai.com").allow("db.internal", 5432);
 * assert.deepEqual(p.rules, [{ host: "api.openai.com", port: 443 }, { host: "db.internal", port: 5432 }]);
 * assert.throws(() => p.allowHttps("*.example.com"), InvalidInputError);
 * ```
 */
export class NetworkPolicy {
  readonly #rules: EgressRule[];
  private constructor(rules: EgressRule[]) {
    this.#rules = rules;
  }
  /** A policy that allows nothing (the default of every sandbox). @example `NetworkPolicy.denyByDefault()` */
  static denyByDefault(): NetworkPolicy {
    return new NetworkPolicy([]);
  }
  /** A new policy that also allows HTTPS (port 443) to `host`. @example `p.allowHttps("api.github.com")` */
  allowHttps(host: string): NetworkPolicy {
    return this.allow(host, 443);
  }
  /** A new policy that also allows TCP to `host:port`. @example `p.allow("pypi.org", 443)` */
  allow(host: string, port: number): NetworkPolicy {
    const h = checkHost("network.allow.host", host);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw invalid("network.allow.port", `must be an integer 1-65535, got ${port}`);
    if (this.#rules.some((r) => r.host === h && r.port === port)) return this;
    return new NetworkPolicy([...this.#rules, { host: h, port }]);
  }
  /** The allowed destinations, in the order they were added. @example `p.rules.length` */
  get rules(): readonly EgressRule[] {
    return [...this.#rules];
  }
  /** The distinct hosts allowed. @example `p.hosts // ["api.openai.com"]` */
  get hosts(): string[] {
    return [...new Set(this.#rules.map((r) => r.host))];
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
