/**
 * The execute-only tools. Every program the SDK runs inside a sandbox (the runner's shell, the file
 * agent's tools, the init) is a copy of a host binary kept in `<state>/helpers/<stamp>/`, mode 0111,
 * and mounted read-only at `/.mvm`. A process started from a file it may not read is not dumpable
 * (the kernel's rule for execute-only programs), so guest code running as the same uid cannot
 * ptrace it, open its `/proc/N/mem`, `fd/` or `environ`, or use `process_vm_writev` /
 * `pidfd_getfd` on it; and being a read-only mount point, `/.mvm` cannot be replaced or renamed.
 *
 * @example
 * ```ts
 * import { HELPER_TOOLS } from "./helpers.ts";
 * console.log(HELPER_TOOLS.includes("sh"));
 * ```
 * @module
 */
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, mkdirSync, realpathSync, renameSync, rmSync, statSync } from "node:fs";
import { NotFoundError } from "../../errors.ts";
import { getEnv, hostFileExists } from "../../runtime/mod.ts";
import { trustedDir } from "./state.ts";

/** The tools copied, by the name they have under `/.mvm`. */
export const HELPER_TOOLS: readonly string[] = [
  "bwrap",
  "sh",
  "sleep",
  "cat",
  "dd",
  "find",
  "mkdir",
  "mv",
  "rm",
  "rmdir",
  "chmod",
  "cp",
  "ln",
  "readlink",
  "tar",
  "setsid",
  // the runners' entry: nsenter execs it inside the sandbox, as the guest's uid. From the readable
  // /usr/bin/setpriv it was dumpable until it exec'd the runner, so guest code could trace it or open its
  // descriptors (the job slots' folder among them) in that window; execute-only, it never is
  "setpriv",
  "env",
  // the runners' and the PTY helper's interpreter (sh/runner.pl, sh/pty.pl): run from here, guest code cannot trace them
  "perl",
];

const SOURCES: Record<string, string[]> = {
  bwrap: [getEnv("MVM_BWRAP") ?? "", "/usr/bin/bwrap", "/bin/bwrap"].filter(Boolean),
  sh: ["/bin/sh", "/usr/bin/sh"],
  setsid: ["/usr/bin/setsid", "/bin/setsid"],
};

function source(name: string): string {
  for (const p of SOURCES[name] ?? [`/usr/bin/${name}`, `/bin/${name}`]) {
    if (hostFileExists(p)) return realpathSync(p);
  }
  throw new NotFoundError(`the local engine needs ${name} on the host (coreutils, findutils, tar, util-linux, a POSIX sh)`, {
    details: { binary: name },
  });
}

/**
 * Makes (once per host binary version) the folder of execute-only copies under `base`, and returns
 * its path. Folders are written aside and renamed into place, so concurrent clients agree.
 *
 * @example `const dir = installHelpers("/var/lib/mvm", 0)`
 */
export function installHelpers(base: string, uid: number): string {
  const sources = HELPER_TOOLS.map((n) => [n, source(n)] as const);
  const stamp = createHash("sha256")
    .update(JSON.stringify(sources.map(([n, p]) => {
      const st = statSync(p);
      return [n, p, st.size, st.mtimeMs, st.ino];
    })))
    .digest("hex").slice(0, 16);
  const parent = `${base}/helpers`;
  trustedDir(parent, uid, 0o711);
  const dir = `${parent}/${stamp}`;
  if (existsSync(`${dir}/sh`)) {
    trustedDir(dir, uid, 0o711);
    return dir;
  }
  const tmp = `${parent}/.tmp-${crypto.randomUUID().slice(0, 8)}`;
  mkdirSync(tmp, { mode: 0o700 });
  try {
    for (const [name, src] of sources) {
      copyFileSync(src, `${tmp}/${name}`);
      chmodSync(`${tmp}/${name}`, 0o111);
    }
    chmodSync(tmp, 0o711);
    try {
      renameSync(tmp, dir);
    } catch (e) {
      if (!existsSync(`${dir}/sh`)) throw e; // another client won the race
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  trustedDir(dir, uid, 0o711);
  return dir;
}
