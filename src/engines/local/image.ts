/**
 * Which image a sandbox runs. The local engine has the host image (`host`, the host's `/usr` and
 * `/etc` read-only) and names the upstream templates this host can serve from it (`python-3.11`
 * when the host has that python, `node-lts`…); anything else is refused, never substituted.
 *
 * @example
 * ```ts
 * import { availableTemplates } from "./image.ts";
 * console.log(availableTemplates()); // ["host", "minimal", "python-3.11", …]
 * ```
 * @module
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { NotFoundError, UnsupportedError } from "../../errors.ts";
import type { SandboxSpec } from "../../spec.ts";

/** Maps a spec's image or template onto what this host has, or explains what exists. @example `resolveImage(spec) // "host"` */
export function resolveImage(spec: SandboxSpec): string {
  if (spec.template === undefined) {
    if (spec.image !== "host") {
      throw new UnsupportedError(
        `the local engine runs the "host" image only (got ${JSON.stringify(spec.image)}); use the mvmctl engine for OCI or nix images`,
      );
    }
    return "host";
  }
  const t = spec.template;
  const available = availableTemplates();
  if (available.includes(t)) return t;
  throw new NotFoundError(
    `template ${JSON.stringify(t)} is not available on this host's image; available: ${
      available.join(", ")
    } (or omit it for the "host" image)`,
    { details: { template: t, available } },
  );
}

/** Templates this host can serve from its own image. @example `availableTemplates()` */
export function availableTemplates(): string[] {
  const out = ["host", "minimal"];
  try {
    for (const f of readdirSync("/usr/bin")) {
      const m = /^python(3\.\d+)$/.exec(f);
      if (m) out.push(`python-${m[1]}`);
    }
  } catch { /* no /usr/bin */ }
  if (existsSync("/usr/bin/node")) {
    out.push("node-lts");
    try {
      // node's major version, read from its headers' version file when installed alongside
      const v = readFileSync("/usr/include/node/node_version.h", "utf8");
      const m = /#define NODE_MAJOR_VERSION (\d+)/.exec(v);
      if (m) out.push(`node-${m[1]}`);
    } catch { /* unknown major */ }
  }
  return out.sort();
}
