/**
 * Which addresses a sandbox may ever reach, as upstream classifies them: some never (metadata,
 * loopback, link-local, `0.0.0.0/8` and `::`, `100.64.0.0/10`, and any of those embedded in a NAT64,
 * 6to4 or Teredo address), some only when named exactly (RFC 1918, ULA `fc00::/7`, multicast,
 * `240.0.0.0/4`), the rest when a rule allows them. The egress proxy applies the same table to every
 * address a name resolves to, on the host, before it connects.
 *
 * @example
 * ```ts
 * import { classifyAddress } from "./addresses.ts";
 * console.log(classifyAddress("169.254.169.254")); // "restricted"
 * console.log(classifyAddress("10.1.2.3")); // "private"
 * console.log(classifyAddress("93.184.216.34")); // "public"
 * ```
 * @module
 */

/** `restricted`: never reachable; `private`: only when named exactly; `public`: when allowed. */
export type AddressClass = "restricted" | "private" | "public";

/** Parses dotted IPv4 (four decimal octets, no leading zeros beyond "0"), or null. @example `parseIPv4("10.0.0.1")` */
export function parseIPv4(s: string): number[] | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return null;
  const o = m.slice(1).map(Number);
  if (o.some((x, i) => x > 255 || (m[i + 1]!.length > 1 && m[i + 1]![0] === "0"))) return null;
  return o;
}

/** Parses an IPv6 address (with an optional embedded IPv4 tail) into 8 words, or null. @example `parseIPv6("::1")` */
export function parseIPv6(s: string): number[] | null {
  if (!/^[0-9a-fA-F:.]+$/.test(s) || s.length > 45) return null;
  if (s.includes(".")) {
    const lastColon = s.lastIndexOf(":");
    const v4 = parseIPv4(s.slice(lastColon + 1));
    if (!v4) return null;
    const [a = 0, b = 0, c = 0, d = 0] = v4; // four octets: parseIPv4 returned them
    s = s.slice(0, lastColon + 1) + ((a << 8) | b).toString(16) + ":" + ((c << 8) | d).toString(16);
  }
  const halves = s.split("::");
  if (halves.length > 2) return null;
  const words = (h: string) => h === "" ? [] : h.split(":");
  const head = words(halves[0]!);
  const rest = halves.length === 2 ? words(halves[1]!) : [];
  if ([...head, ...rest].some((w) => !/^[0-9a-fA-F]{1,4}$/.test(w))) return null;
  const given = head.length + rest.length;
  if (halves.length === 1 ? given !== 8 : given > 7) return null;
  const zeros = new Array(8 - given).fill(0);
  return [...head.map((w) => parseInt(w, 16)), ...zeros, ...rest.map((w) => parseInt(w, 16))];
}

function classifyV4(o: number[]): AddressClass {
  const [a = 0, b = 0] = o; // four octets: parseIPv4 returned them
  if (a === 0 || a === 127) return "restricted"; // this network, loopback
  if (a === 169 && b === 254) return "restricted"; // link-local, metadata 169.254.169.254 / 169.254.170.2
  if (a === 100 && b >= 64 && b <= 127) return "restricted"; // CGNAT, metadata 100.100.100.200
  if (a === 255 && b === 255 && o[2] === 255 && o[3] === 255) return "restricted"; // broadcast
  if (a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168)) return "private";
  if (a >= 224) return "private"; // multicast 224/4, reserved 240/4
  return "public";
}

function classifyV6(w: number[]): AddressClass {
  if (w.every((x) => x === 0)) return "restricted"; // ::
  if (w.slice(0, 7).every((x) => x === 0) && w[7] === 1) return "restricted"; // ::1
  const word = (i: number): number => w[i] ?? 0; // eight words: parseIPv6 returned them
  const v4At = (i: number) => [word(i) >> 8, word(i) & 255, word(i + 1) >> 8, word(i + 1) & 255];
  // IPv4-mapped ::ffff:a.b.c.d and IPv4-compatible ::a.b.c.d
  if (w.slice(0, 5).every((x) => x === 0) && (w[5] === 0xffff || w[5] === 0)) return worst(classifyV4(v4At(6)), "public");
  if (w[0] === 0x64 && w[1] === 0xff9b) return worst(classifyV4(v4At(6)), "public"); // NAT64 64:ff9b::/96 and 64:ff9b:1::/48
  if (w[0] === 0x2002) return worst(classifyV4(v4At(1)), "public"); // 6to4
  if (w[0] === 0x2001 && w[1] === 0) { // Teredo: the client's address is the last 32 bits, inverted
    return worst(classifyV4(v4At(6).map((x) => x ^ 255)), "public");
  }
  if ((word(0) & 0xffc0) === 0xfe80) return "restricted"; // link-local
  if (w[0] === 0xfd00 && w[1] === 0x0ec2 && w.slice(2, 7).every((x) => x === 0) && w[7] === 0x254) return "restricted"; // fd00:ec2::254
  if ((word(0) & 0xfe00) === 0xfc00) return "private"; // ULA
  if ((word(0) & 0xff00) === 0xff00) return "private"; // multicast
  return "public";
}

function worst(a: AddressClass, b: AddressClass): AddressClass {
  return a === "restricted" || b === "restricted" ? "restricted" : a === "private" || b === "private" ? "private" : "public";
}

/**
 * The class of an IP address literal (IPv4 dotted, IPv6 with or without brackets); null when
 * `s` is not an address. @example `classifyAddress("::ffff:127.0.0.1") // "restricted"`
 */
export function classifyAddress(s: string): AddressClass | null {
  const v4 = parseIPv4(s);
  if (v4) return classifyV4(v4);
  const v6 = parseIPv6(s.startsWith("[") && s.endsWith("]") ? s.slice(1, -1) : s);
  return v6 ? classifyV6(v6) : null;
}
