/**
 * The local engine's state on the host: one folder per sandbox under
 * `$MVM_STATE_DIR` (default `/var/lib/mvm` for root, else
 * `$XDG_STATE_HOME/mvm` or `~/.local/state/mvm`), files 0600, and the
 * structured event log (`events.jsonl`) that `logs()` reads.
 *
 * @example
 * ```ts
 * import { stateRoot } from "./state.ts";
 * console.log(stateRoot()); // "/var/lib/mvm/sandboxes" when root
 * ```
 * @module
 */
import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { getEnv } from "../../runtime/mod.ts";

/** Where sandbox folders live. @example `stateRoot(0)` */
export function stateRoot(uid: number): string {
  const explicit = getEnv("MVM_STATE_DIR");
  if (explicit) return `${explicit.replace(/\/+$/, "")}/sandboxes`;
  if (uid === 0) return "/var/lib/mvm/sandboxes";
  const xdg = getEnv("XDG_STATE_HOME") || `${getEnv("HOME") ?? "/tmp"}/.local/state`;
  return `${xdg}/mvm/sandboxes`;
}

/** What the engine stores about a sandbox (never a secret value). */
export interface Meta {
  v: 1;
  id: string;
  image: string;
  template?: string;
  name?: string;
  workloadId: string;
  tags: Record<string, string>;
  createdAt: string;
  expiresAt: string;
  ttlSeconds: number;
  limits: { cpu?: number; memoryMb?: number; pidsLimit?: number };
  /** Environment of every guest process; secrets appear only as placeholders. */
  env: Record<string, string>;
  ownerPid: number;
  sandboxUid: number;
}

/** Reads a sandbox's metadata, or null when the folder is gone. @example `readMeta(dir)` */
export function readMeta(dir: string): Meta | null {
  try {
    return JSON.parse(readFileSync(`${dir}/meta.json`, "utf8")) as Meta;
  } catch {
    return null;
  }
}

/** Reads a pid file, or 0. @example `readPid(dir + "/supervisor.pid")` */
export function readPid(file: string): number {
  try {
    return Number(readFileSync(file, "utf8").trim()) || 0;
  } catch {
    return 0;
  }
}

/** A fresh audit id. @example `newAuditId() // "aud_1f3c…"` */
export function newAuditId(): string {
  return `aud_${crypto.randomUUID().replaceAll("-", "").slice(0, 20)}`;
}

/**
 * Appends one event to the sandbox's log and returns its id (the audit id of
 * whatever the event records). Lines are small, so O_APPEND keeps concurrent
 * writers from interleaving.
 *
 * @example `const auditId = appendEvent(dir, "files.write", { path, size })`
 */
export function appendEvent(dir: string, type: string, fields: Record<string, unknown> = {}): string {
  const id = newAuditId();
  if (!existsSync(dir)) return id;
  try {
    appendFileSync(`${dir}/events.jsonl`, JSON.stringify({ id, time: new Date().toISOString(), type, source: "sdk", ...fields }) + "\n", {
      mode: 0o600,
    });
  } catch { /* the sandbox went away; the id is still unique */ }
  return id;
}
