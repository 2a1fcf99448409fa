/**
 * The baseline every sandbox figure stands beside: the argv of a raw `bwrap … true` with the same
 * namespaces and mounts a sandbox starts with, and nothing of the SDK.
 *
 * @example
 * ```ts
 * import { RAW_BWRAP } from "./baseline.ts";
 * console.log(RAW_BWRAP.at(-1)); // "/bin/true"
 * ```
 * @module
 */
export const RAW_BWRAP: readonly string[] = [
  "--unshare-all",
  "--unshare-user",
  "--die-with-parent",
  "--ro-bind",
  "/usr",
  "/usr",
  "--symlink",
  "usr/bin",
  "/bin",
  "--symlink",
  "usr/lib",
  "/lib",
  "--symlink",
  "usr/lib64",
  "/lib64",
  "--proc",
  "/proc",
  "--dev",
  "/dev",
  "--tmpfs",
  "/tmp",
  "/bin/true",
];
