/**
 * What the local engine needs from the host, found once per process: Linux, bubblewrap, util-linux
 * (`nsenter`, `setpriv`, `setsid`), Perl (the host-side entry, `sh/enter.pl`), a trusted state
 * folder, the execute-only tools and the cgroup layout. Each missing piece is a typed error naming
 * the package to install.
 *
 * @example
 * ```ts
 * import { preflight } from "./preflight.ts";
 * const t = await preflight();
 * console.log(t.bwrap, t.root);
 * ```
 * @module
 */
import { existsSync, lstatSync, readlinkSync, statSync } from "node:fs";
import process from "node:process";
import { NotFoundError, PermissionDeniedError, UnsupportedError } from "../../errors.ts";
import { getEnv, hostPlatform, hostUid } from "../../runtime/mod.ts";
import { type CgroupLayout, detectCgroups } from "./cgroups.ts";
import { installHelpers } from "./helpers.ts";
import { rootTag, stateBase, trustedDir } from "./state.ts";
import type { HostRootEntry } from "./bwrap.ts";

/** The host tools and facts the engine runs with. */
export interface Tools {
  bwrap: string;
  nsenter: string;
  setsid: string;
  setpriv: string;
  perl: string;
  /** keyctl's syscall number on this architecture. */
  keyctl: number;
  uid: number;
  /** `<base>/sandboxes`: one folder per sandbox. */
  root: string;
  /** Names this state root's cgroups (`mvm/<tag>/<id>`). */
  tag: string;
  /** The execute-only tools, mounted at `/.mvm`. */
  helpers: string;
  /** `/bin`, `/lib`… as the host has them. */
  hostRoot: HostRootEntry[];
  layout: CgroupLayout | null;
}

const KEYCTL: Record<string, number> = { x64: 250, arm64: 219, riscv64: 219, ia32: 288, arm: 311, ppc64: 271, s390x: 280, loong64: 219 };

/** Finds a binary on PATH, then in the usual places. @example `which("bwrap")` */
export function which(bin: string): string | null {
  for (const dir of (getEnv("PATH") ?? "/usr/bin:/bin").split(":")) {
    if (dir.startsWith("/") && existsSync(`${dir}/${bin}`)) return `${dir}/${bin}`;
  }
  for (const dir of ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]) if (existsSync(`${dir}/${bin}`)) return `${dir}/${bin}`;
  return null;
}

let tools: Promise<Tools> | undefined;

/** The host's tools, found once (a failure is retried on the next call). @example `await preflight()` */
export function preflight(): Promise<Tools> {
  return tools ??= preflightOnce().catch((e) => {
    tools = undefined;
    throw e;
  });
}

function need(b: string, pkg: string): string {
  const p = which(b);
  if (!p) {
    throw new NotFoundError(`${b} is not installed: install the package '${pkg}' (apt-get install ${pkg})`, {
      details: { binary: b, package: pkg },
    });
  }
  return p;
}

async function preflightOnce(): Promise<Tools> {
  if (hostPlatform() !== "linux") {
    throw new UnsupportedError(
      `the local engine needs Linux (namespaces and bubblewrap); this is ${hostPlatform()}. Use the mvmctl engine (Vz microVMs on macOS) instead.`,
    );
  }
  const wanted = getEnv("MVM_BWRAP");
  const bwrap = wanted ? (existsSync(wanted) ? wanted : null) : which("bwrap");
  if (!bwrap) {
    throw new NotFoundError(
      `bubblewrap (bwrap) is not installed${
        wanted ? ` at MVM_BWRAP=${wanted}` : ""
      }: install the package 'bubblewrap' (apt-get install bubblewrap / dnf install bubblewrap / pacman -S bubblewrap)`,
      { details: { binary: "bwrap", package: "bubblewrap" } },
    );
  }
  const keyctl = KEYCTL[process.arch];
  if (keyctl === undefined) throw new UnsupportedError(`the local engine does not know this architecture (${process.arch})`);
  const t = {
    bwrap,
    nsenter: need("nsenter", "util-linux"),
    setsid: need("setsid", "util-linux"),
    setpriv: need("setpriv", "util-linux"),
    perl: need("perl", "perl-base"),
    keyctl,
  };
  const uid = await hostUid();
  const base = stateBase(uid);
  const root = `${base}/sandboxes`;
  // as root, sandbox users reach their root folder and the tools through these folders: 0711
  const mode = uid === 0 ? 0o711 : 0o700;
  trustedDir(base, uid, mode);
  trustedDir(root, uid, mode);
  if (uid === 0) assertSearchable(base);
  const helpers = installHelpers(base, uid);
  return { ...t, uid, root, tag: rootTag(root), helpers, hostRoot: hostRootEntries(), layout: await detectCgroups() };
}

/** `/bin`, `/sbin`, `/lib*` as the host has them: symlinks (merged /usr) or folders. */
function hostRootEntries(): HostRootEntry[] {
  const out: HostRootEntry[] = [];
  for (const name of ["bin", "sbin", "lib", "lib32", "lib64", "libx32"]) {
    try {
      const st = lstatSync(`/${name}`);
      if (st.isSymbolicLink()) out.push({ name, target: readlinkSync(`/${name}`) });
      else if (st.isDirectory()) out.push({ name });
    } catch { /* not on this host */ }
  }
  return out;
}

/**
 * As root, each sandbox runs as its own unprivileged uid, which bubblewrap uses to reach the
 * sandbox's folder: every folder above it must be searchable by others.
 */
function assertSearchable(dir: string): void {
  let p = dir;
  while (p !== "/" && p !== "") {
    const mode = statSync(p).mode;
    if ((mode & 0o001) === 0) {
      throw new PermissionDeniedError(
        `the state directory ${dir} cannot be reached by sandbox users: ${p} is not searchable by others (mode ${
          (mode & 0o777).toString(8)
        }). ` +
          `Run chmod o+x on it, or point MVM_STATE_DIR elsewhere (default /var/lib/mvm).`,
        { details: { path: p } },
      );
    }
    p = p.slice(0, p.lastIndexOf("/")) || "/";
  }
}
