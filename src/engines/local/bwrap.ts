/**
 * The bubblewrap command line of a sandbox, as a pure function of what it needs.
 *
 * The layout: the sandbox's own folder is `/` (writable); the host's `/usr` and `/etc` are bound
 * read-only, and so are `/bin`, `/sbin`, `/lib*` — as read-only mount points, not as symlinks the
 * guest could replace in its writable `/` (everything the SDK executes, and the ELF loader, resolve
 * there). The SDK's execute-only tools are the read-only `/.mvm`. The init (pid 1, no bwrap reaper) is the
 * execute-only shell, so the process the SDK enters the sandbox through cannot be traced; user namespaces
 * cannot be nested when the engine runs as root (`--disable-userns`), so guest code cannot build namespaces of its own for a
 * traced process to hand over.
 *
 * @example
 * ```ts
 * import { bwrapArgv } from "./bwrap.ts";
 * const argv = bwrapArgv({ bwrap: "/usr/bin/bwrap", id: "sbx-000000000000", rootDir: "/s/root", helpers: "/h", tmpBytes: 1 << 29, hostRoot: [] });
 * console.log(argv.args.includes("--unshare-net"));
 * ```
 * @module
 */

/**
 * The sandbox's pid 1: the SDK's execute-only shell, which says it is ready, lets go of every
 * descriptor of the start-up, and then reaps orphans for as long as the sandbox lives (a `wait` on
 * an hourly execute-only `sleep` reaps any child that ends meanwhile). As pid 1 it ignores the
 * signals guest code may send it, and not being dumpable it cannot be traced.
 */
export const INIT_SH = "echo ready >&4; exec 3>&- 4>&- 6<&- 2>/dev/null; while :; do /.mvm/sleep 3600 & wait $!; done";

/** One of the host's `/bin`, `/lib*`: a symlink (merged /usr) or a folder. */
export interface HostRootEntry {
  name: string;
  target?: string;
}

/** What a sandbox's command line is made of. */
export interface BwrapInput {
  bwrap: string;
  id: string;
  /** The host folder that becomes the sandbox's `/`. */
  rootDir: string;
  /** The folder of execute-only tools. */
  helpers: string;
  tmpBytes: number;
  hostRoot: HostRootEntry[];
  /** A CA bundle (the system's CAs and the sandbox's egress CA) bound read-only over the system bundle path of the sandbox's `/etc` view. */
  caBundle?: string | undefined;
  /** As root: run bubblewrap as this unprivileged host uid, through setpriv. */
  asUid?: { setpriv: string; uid: number } | undefined;
}

/**
 * The command that starts a sandbox: `argv` (setpriv prefix included) reads the rest of its
 * arguments, `args`, NUL-separated from descriptor 6 (`--args 6`) — only the init's own command follows — so the sandbox's pid 1 shows no
 * host path in its command line. @example `const { argv, args } = bwrapArgv(input)`
 */
export function bwrapArgv(i: BwrapInput): { argv: string[]; args: string[] } {
  const binds: string[] = [];
  for (const e of i.hostRoot) {
    const src = e.target === undefined ? `/${e.name}` : e.target.startsWith("/") ? e.target : `/${e.target}`;
    binds.push("--ro-bind", src, `/${e.name}`);
  }
  const argv = [
    ...(i.asUid ? [i.asUid.setpriv, `--reuid=${i.asUid.uid}`, `--regid=${i.asUid.uid}`, "--clear-groups", "--"] : []),
    i.bwrap,
    "--args",
    "6",
    "--",
    "/.mvm/sh",
    "-c",
    INIT_SH,
  ];
  const args = [
    "--unshare-user",
    "--unshare-pid",
    "--unshare-net",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup-try",
    // unprivileged callers could not enter the namespaces bwrap made before the nested user
    // namespace this needs (nsenter: EPERM), so only root sandboxes get it
    ...(i.asUid ? ["--disable-userns"] : []),
    "--uid",
    "0",
    "--gid",
    "0",
    "--hostname",
    i.id,
    "--as-pid-1",
    "--die-with-parent",
    "--new-session",
    "--clearenv",
    "--setenv",
    "PATH",
    "/usr/bin:/bin",
    "--bind",
    i.rootDir,
    "/",
    "--ro-bind",
    "/usr",
    "/usr",
    "--ro-bind",
    "/etc",
    "/etc",
    ...(i.caBundle ? ["--ro-bind", i.caBundle, "/etc/ssl/certs/ca-certificates.crt"] : []),
    ...binds,
    "--ro-bind",
    i.helpers,
    "/.mvm",
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    "--size",
    String(i.tmpBytes),
    "--tmpfs",
    "/tmp",
    "--info-fd",
    "3",
  ];
  return { argv, args };
}
