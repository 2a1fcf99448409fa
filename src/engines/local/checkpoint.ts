/**
 * The memory checkpoint probe of the local engine: whether this host has a checkpoint tool (CRIU) that
 * could write a sandbox's memory to disk, and, whatever it finds, why `pause({ toDisk: true })` cannot
 * be served. It looks for `criu` in the usual places, asks its version (CRIU ≥ 4 is needed: Debian 12's
 * 3.17 fails on current kernels with "vdso: Unexpected rt vDSO area bounds") and runs `criu check`.
 * The result is cached per process; on a host without CRIU it costs a few `stat`s and no spawn.
 *
 * @example
 * ```ts
 * import { checkpointProbe } from "./checkpoint.ts";
 * const p = await checkpointProbe();
 * console.log(p.works, p.reason); // false "CRIU is not installed on this host …"
 * ```
 * @module
 */
import { existsSync } from "node:fs";
import { runtime } from "../../runtime/mod.ts";
import { collectText } from "../../streams.ts";

/** What the probe found. */
export interface CheckpointProbe {
  /** The tool it found (`/usr/sbin/criu`), or null. */
  tool: string | null;
  /** Its version (`4.1`), when it said. */
  version: string | null;
  /** Whether the tool passed its own check (`criu check`) on this host. */
  works: boolean;
  /** Why memory checkpoints (`pause({ toDisk: true })`, `vm_full`) cannot be served here, in a sentence. */
  reason: string;
}

/** Where CRIU is installed by distributions and by hand. */
export const CRIU_PATHS: readonly string[] = [
  "/usr/sbin/criu",
  "/usr/bin/criu",
  "/sbin/criu",
  "/usr/local/sbin/criu",
  "/usr/local/bin/criu",
];
const PROBE_TIMEOUT_MS = 10_000;

let cached: Promise<CheckpointProbe> | undefined;

/** The probe of this host, once per process. @example `(await checkpointProbe()).reason` */
export function checkpointProbe(): Promise<CheckpointProbe> {
  return cached ??= probeCheckpointTool();
}

/** Runs the tool with a bound; null when it cannot be run at all. */
async function run(tool: string, args: string[]): Promise<{ code: number | null; out: string } | string> {
  try {
    const c = await runtime().spawn(tool, args, {
      clearEnv: true,
      env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    });
    const timer = setTimeout(() => c.kill("SIGKILL"), PROBE_TIMEOUT_MS);
    try {
      const [out, err, status] = await Promise.all([collectText(c.stdout!), collectText(c.stderr!), c.status]);
      return { code: status.code, out: `${out}\n${err}`.trim() };
    } finally {
      clearTimeout(timer);
    }
  } catch (e) {
    return (e as Error).message;
  }
}

/**
 * Probes for a checkpoint tool among `paths` (uncached; {@linkcode checkpointProbe} caches the host's).
 *
 * @example `await probeCheckpointTool(["/opt/criu/sbin/criu"])`
 */
export async function probeCheckpointTool(paths: readonly string[] = CRIU_PATHS): Promise<CheckpointProbe> {
  const tool = paths.find((p) => existsSync(p)) ?? null;
  if (tool === null) {
    return {
      tool,
      version: null,
      works: false,
      reason: "CRIU is not installed on this host (memory checkpoints need CRIU ≥ 4; Debian 12's CRIU 3.17 fails on current kernels)",
    };
  }
  const no = (version: string | null, reason: string): CheckpointProbe => ({ tool, version, works: false, reason });
  const v = await run(tool, ["--version"]);
  if (typeof v === "string") return no(null, `${tool} could not be run: ${v}`);
  const m = /Version:\s*(\d+)\.(\d+)(?:\.(\d+))?/.exec(v.out);
  if (!m) return no(null, `${tool} --version did not say its version (${JSON.stringify(v.out.slice(0, 200))})`);
  const version = m.slice(1).filter((x) => x !== undefined).join(".");
  if (Number(m[1]) < 4) {
    return no(
      version,
      `${tool} is CRIU ${version}; memory checkpoints need CRIU ≥ 4 (3.x fails on current kernels: "vdso: Unexpected rt vDSO area bounds")`,
    );
  }
  const c = await run(tool, ["check"]);
  if (typeof c === "string") return no(version, `${tool} check could not be run: ${c}`);
  if (c.code !== 0) {
    const tail = c.out.split("\n").filter(Boolean).slice(-3).join(" | ").slice(-400);
    return no(version, `${tool} (CRIU ${version}) fails its own check on this host (exit ${c.code}): ${tail}`);
  }
  return {
    tool,
    version,
    works: true,
    reason:
      `CRIU ${version} at ${tool} passes "criu check", but the local engine does not drive it yet (memory checkpoints are not built); ` +
      "memory stays in RAM — use pause()",
  };
}
