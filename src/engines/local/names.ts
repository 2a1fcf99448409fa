/**
 * Sandbox names, unique among the live sandboxes of a state root. A name is a file
 * `<state>/names/<name>` holding the id of the sandbox that took it. Checking and taking a name
 * happen under a lock (a directory made with `mkdir`, which only one process can make), so two
 * creates with the same name in two processes cannot both win. A name whose sandbox is gone
 * (destroyed, expired, reaped) is free again: the next create that wants it takes it over.
 *
 * The folder is the engine's own (owned by the host user, 0700, under the trusted state root);
 * nothing of a sandbox can reach it.
 *
 * @example
 * ```ts
 * import { nameFile } from "./names.ts";
 * console.log(nameFile("/var/lib/mvm/sandboxes", "web")); // "/var/lib/mvm/names/web"
 * ```
 * @module
 */
import { mkdirSync, readFileSync, renameSync, rmdirSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { ConflictError, TimeoutError } from "../../errors.ts";
import { trustedDir } from "./state.ts";

/** A lock older than this was left by a process that died holding it. */
const STALE_LOCK_MS = 10_000;

/** The names folder beside the sandboxes folder `root`. */
function namesDir(root: string): string {
  return `${root.slice(0, root.lastIndexOf("/"))}/names`;
}

/** The file that holds the id of the sandbox named `name`. @example `nameFile(root, "web")` */
export function nameFile(root: string, name: string): string {
  return `${namesDir(root)}/${name}`;
}

/** The id the name file holds, or null. @example `lookupName(root, "web")` */
export function lookupName(root: string, name: string): string | null {
  try {
    const id = readFileSync(nameFile(root, name), "utf8").trim();
    return /^sbx-[a-z0-9]{12}$/.test(id) ? id : null;
  } catch {
    return null;
  }
}

/** Runs `fn` holding the name's lock. */
async function locked<T>(root: string, name: string, fn: () => T): Promise<T> {
  const lock = `${namesDir(root)}/.${name}.lock`;
  for (let waited = 0;; waited += 20) {
    try {
      mkdirSync(lock, { mode: 0o700 });
      break;
    } catch (e) {
      if ((e as { code?: string }).code !== "EEXIST") throw e;
      try {
        if (Date.now() - statSync(lock).mtimeMs > STALE_LOCK_MS) rmdirSync(lock);
      } catch { /* gone meanwhile */ }
      if (waited > 2 * STALE_LOCK_MS) {
        throw new TimeoutError(
          `could not take the lock of sandbox name ${JSON.stringify(name)} (${lock}); remove it if no create is running`,
        );
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  try {
    return fn();
  } finally {
    try {
      rmdirSync(lock);
    } catch { /* nothing to do */ }
  }
}

/**
 * Takes `name` for sandbox `id`, unless a live sandbox (`live(owner)`) holds it: then CONFLICT
 * naming the holder. @example `await claimName(root, uid, "web", id, (other) => isLive(other))`
 */
export async function claimName(root: string, uid: number, name: string, id: string, live: (id: string) => boolean): Promise<void> {
  trustedDir(namesDir(root), uid, 0o700);
  await locked(root, name, () => {
    const owner = lookupName(root, name);
    if (owner !== null && owner !== id && live(owner)) {
      throw new ConflictError(
        `a live sandbox (${owner}) is already named ${JSON.stringify(name)}: names are unique among live sandboxes; ` +
          `pick another name, destroy that sandbox, or reach it with Sandbox.connect({ name: ${JSON.stringify(name)} })`,
        { details: { field: "name", name, id: owner } },
      );
    }
    const file = nameFile(root, name);
    writeFileSync(`${file}.${id}`, id, { mode: 0o600 });
    renameSync(`${file}.${id}`, file);
  });
}

/** Lets `name` go if `id` still holds it. @example `await releaseName(root, "web", id)` */
export async function releaseName(root: string, name: string, id: string): Promise<void> {
  if (lookupName(root, name) !== id) return;
  await locked(root, name, () => {
    if (lookupName(root, name) === id) unlinkSync(nameFile(root, name));
  }).catch(() => {});
}
