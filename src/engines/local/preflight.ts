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
import { lstatSync, readlinkSync, statSync } from "node:fs";
import process from "node:process";
import { NotFoundError, PermissionDeniedError, UnsupportedError } from "../../errors.ts";
import { getEnv, hostFileExists, hostPlatform, hostUid, isRefusal, permissionRefusal, SDK_ENV } from "../../runtime/mod.ts";
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
  /** prctl's and mknodat's (a runner becomes a subreaper; its job slots are fifos). */
  prctl: number;
  mknodat: number;
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
const PRCTL: Record<string, number> = { x64: 157, arm64: 167, riscv64: 167, ia32: 172, arm: 172, ppc64: 171, s390x: 172, loong64: 167 };
const MKNODAT: Record<string, number> = { x64: 259, arm64: 33, riscv64: 33, ia32: 297, arm: 324, ppc64: 288, s390x: 290, loong64: 33 };

/**
 * Where the engine looks for host programs, in order. A fixed list, not PATH: the host-side tools run
 * with privileges the guest lacks, so a PATH entry must not choose them, and a scoped Deno
 * `--allow-read` then needs only these folders (`/usr` and `/bin`, `/sbin`), never every PATH entry.
 */
export const TOOL_DIRS: readonly string[] = ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin", "/usr/local/sbin"];

/** Finds a host program in {@linkcode TOOL_DIRS}. @example `which("bwrap") // "/usr/bin/bwrap"` */
export function which(bin: string): string | null {
  for (const dir of TOOL_DIRS) if (hostFileExists(`${dir}/${bin}`)) return `${dir}/${bin}`;
  return null;
}

/** Host folders the engine reads (never writes): its programs, the helpers' sources, `/bin`, `/lib*` as mirrored into sandboxes. */
export const HOST_READ: readonly string[] = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];

/**
 * The exact Deno permissions the local engine needs with these tools: `--allow-run` for the two
 * programs it starts on the host (perl, the entry of every helper, and `/bin/sh`), `--allow-read`
 * for the state folder and {@linkcode HOST_READ}, `--allow-write` for the state folder, and
 * `--allow-env` for the names in `SDK_ENV`. A detached command's keeper runs with exactly these.
 *
 * @example `denoFlags(await preflight()) // ["--allow-run=/usr/bin/perl,/bin/sh", …]`
 */
export function denoFlags(t: Pick<Tools, "perl" | "root" | "bwrap">): string[] {
  const base = t.root.replace(/\/sandboxes$/, "");
  // a bubblewrap named by MVM_BWRAP outside the system folders is read too
  const bwrap = HOST_READ.some((d) => t.bwrap.startsWith(`${d}/`)) ? [] : [t.bwrap];
  return [
    `--allow-run=${t.perl},/bin/sh`,
    `--allow-read=${[base, ...HOST_READ, ...bwrap].join(",")}`,
    `--allow-write=${base}`,
    `--allow-env=${[...SDK_ENV.required, ...SDK_ENV.optional].join(",")}`,
  ];
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
  const bwrap = wanted ? (hostFileExists(wanted) ? wanted : null) : which("bwrap");
  if (!bwrap) {
    throw new NotFoundError(
      `bubblewrap (bwrap) is not installed${
        wanted ? ` at MVM_BWRAP=${wanted}` : ""
      }: install the package 'bubblewrap' (apt-get install bubblewrap / dnf install bubblewrap / pacman -S bubblewrap)`,
      { details: { binary: "bwrap", package: "bubblewrap" } },
    );
  }
  const [keyctl, prctl, mknodat] = [KEYCTL, PRCTL, MKNODAT].map((t) => t[process.arch]);
  if (keyctl === undefined || prctl === undefined || mknodat === undefined) {
    throw new UnsupportedError(`the local engine does not know this architecture (${process.arch})`);
  }
  const t = {
    bwrap,
    nsenter: need("nsenter", "util-linux"),
    setsid: need("setsid", "util-linux"),
    setpriv: need("setpriv", "util-linux"),
    perl: need("perl", "perl-base"),
    keyctl,
    prctl,
    mknodat,
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
    } catch (e) {
      // a refusal would silently leave the folder out of every sandbox
      const refused = permissionRefusal(e, `--allow-read=/${name}`, `looking at /${name} (mirrored into every sandbox)`);
      if (refused) throw refused;
    }
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
    let mode: number;
    try {
      mode = statSync(p).mode;
    } catch (e) {
      // a folder above the state directory that a scoped Deno --allow-read does not cover: bwrap says
      // so itself if it cannot reach the state directory
      if (isRefusal(e)) return;
      throw e;
    }
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
