/**
 * The file API of a local sandbox, over the file agent. Paths are absolute in the sandbox's view
 * (relative ones resolve against `/`); names that are not UTF-8 round-trip (see `src/filenames.ts`).
 *
 * @example
 * ```ts
 * import { parseInfos } from "./files.ts";
 * const rec = new TextEncoder().encode("f\t3\t644\t1700000000.5\t/app/a.txt\0");
 * console.log(parseInfos(rec)[0].name); // "a.txt"
 * ```
 * @module
 */
import { InternalError, NotFoundError, SandboxError, TransportError } from "../../errors.ts";
import type { FileInfo } from "../../types.ts";
import type { EngineFiles, WrittenFile } from "../contract.ts";
import { agent, agentStream } from "./agent.ts";
import { decodeName } from "../../filenames.ts";
import type { SandboxCore } from "./core.ts";

/** A path in the sandbox's view. @example `absolute("app") // "/app"` */
export function absolute(path: string): string {
  return path.startsWith("/") ? path : `/${path}`;
}

/** Parses the agent's `find -printf '%y\t%s\t%m\t%T@\t%p\0'` records. @example `parseInfos(bytes)` */
export function parseInfos(out: Uint8Array): FileInfo[] {
  const infos: FileInfo[] = [];
  let start = 0;
  for (let i = 0; i <= out.length; i++) {
    if (i < out.length && out[i] !== 0) continue;
    const rec = out.subarray(start, i);
    start = i + 1;
    const tabs: number[] = [];
    for (let k = 0; k < rec.length && tabs.length < 4; k++) if (rec[k] === 9) tabs.push(k);
    if (tabs.length < 4) continue;
    const head = new TextDecoder().decode(rec.subarray(0, tabs[3]!)).split("\t");
    const path = decodeName(rec.subarray(tabs[3]! + 1));
    const [t, size, mode, mtime] = head;
    infos.push({
      path,
      name: path === "/" ? "/" : path.replace(/\/+$/, "").split("/").pop() ?? path,
      type: t === "f" ? "file" : t === "d" ? "dir" : t === "l" ? "symlink" : "other",
      size: Number(size),
      mode: parseInt(mode!, 8),
      mtime: new Date(Number(mtime) * 1000).toISOString(),
    });
  }
  return infos;
}

/** Bytes up to the first NUL (the agent ends a path it prints with one). */
function trimNul(b: Uint8Array): Uint8Array {
  const i = b.indexOf(0);
  return i < 0 ? b : b.subarray(0, i);
}

/** The file API of one sandbox. @example `const files = localFiles(core)` */
export function localFiles(core: SandboxCore): EngineFiles {
  const event = (type: string, fields: Record<string, unknown>) => core.dir.appendEvent(type, fields);
  return {
    readStream: (path, range, signal) => {
      const p = absolute(path);
      return agentStream(core, "read", [p, String(range.offset ?? 0), range.length === undefined ? "-" : String(range.length)], p, signal);
    },
    readTar: (dir, signal) => agentStream(core, "tarout", [absolute(dir)], absolute(dir), signal),
    writeTar: async (dir, tar, signal) => {
      await agent(core, "tarin", [absolute(dir)], dir, tar, undefined, signal);
      return event("files.writeTar", { path: absolute(dir) });
    },
    write: async (path, data, opts, signal): Promise<WrittenFile> => {
      const p = absolute(path);
      const dir = p.slice(0, p.lastIndexOf("/")) || "/";
      const nonce = crypto.randomUUID().replaceAll("-", "").slice(0, 16);
      // the bytes this process sent: a transport that died mid-way ends the agent's input early, and a
      // short file must never be committed
      let sent = 0;
      const counted = data.pipeThrough(
        new TransformStream<Uint8Array, Uint8Array>({ transform: (c, ctl) => void (sent += c.length, ctl.enqueue(c)) }),
      );
      const cleanup = () => agent(core, "cleanup", [dir, nonce], p).catch(() => {});
      let tmp: FileInfo | undefined;
      try {
        [tmp] = parseInfos(
          await agent(core, "write", [p, opts.mode.toString(8), opts.createParents ? "1" : "0"], p, counted, nonce, signal),
        );
      } catch (e) {
        // the agent's own failure removed its temporary file; a helper that died may have left it
        if (!(e instanceof SandboxError) || e instanceof TransportError) await cleanup();
        throw e;
      }
      if (!tmp || tmp.size !== sent) {
        await cleanup();
        throw new TransportError(
          `files.write ${JSON.stringify(p)}: the sandbox received ${tmp?.size ?? "no"} of ${sent} bytes; nothing was committed`,
          { details: { path: p, sent, received: tmp?.size ?? null } },
        );
      }
      let info: FileInfo | undefined;
      try {
        [info] = parseInfos(await agent(core, "commit", [p, nonce], p));
      } catch (e) {
        await cleanup();
        throw e;
      }
      if (!info) throw new InternalError(`files.write ${JSON.stringify(p)}: no file info came back`);
      return { ...info, auditId: event("files.write", { path: p, size: info.size }) };
    },
    list: async (path) => parseInfos(await agent(core, "list", [absolute(path)], path)),
    stat: async (path) => {
      const [info] = parseInfos(await agent(core, "stat", [absolute(path)], path));
      if (!info) throw new NotFoundError(`files.stat ${JSON.stringify(path)}: not found`, { details: { path } });
      return info;
    },
    mkdir: async (path, opts) => {
      const [info] = parseInfos(await agent(core, "mkdir", [absolute(path), opts.mode.toString(8), opts.parents ? "1" : "0"], path));
      if (!info) throw new InternalError(`files.mkdir ${JSON.stringify(path)}: no file info came back`);
      return { ...info, auditId: event("files.mkdir", { path: absolute(path) }) };
    },
    remove: async (path, opts) => {
      await agent(core, "remove", [absolute(path), opts.recursive ? "1" : "0"], path);
      return event("files.remove", { path: absolute(path), recursive: opts.recursive });
    },
    chmod: async (path, mode) => {
      const p = absolute(path);
      const [info] = parseInfos(await agent(core, "chmod", [p, mode.toString(8)], path));
      if (!info) throw new InternalError(`files.chmod ${JSON.stringify(path)}: no file info came back`);
      return { ...info, auditId: event("files.chmod", { path: p, mode }) };
    },
    copy: async (from, to, opts) => {
      const [f, t] = [absolute(from), absolute(to)];
      const [info] = parseInfos(await agent(core, "copy", [f, t, opts.recursive ? "1" : "0", opts.overwrite ? "1" : "0"], from));
      if (!info) throw new InternalError(`files.copy ${JSON.stringify(from)}: no file info came back`);
      return { ...info, auditId: event("files.copy", { from: f, to: t, recursive: opts.recursive }) };
    },
    symlink: async (target, path) => {
      const p = absolute(path);
      const [info] = parseInfos(await agent(core, "symlink", [target, p], path));
      if (!info) throw new InternalError(`files.symlink ${JSON.stringify(path)}: no file info came back`);
      return { ...info, auditId: event("files.symlink", { path: p }) };
    },
    realpath: async (path) => decodeName(trimNul(await agent(core, "realpath", [absolute(path)], path))),
    readlink: async (path) => decodeName(trimNul(await agent(core, "readlink", [absolute(path)], path))),
    rename: async (from, to) => {
      const [info] = parseInfos(await agent(core, "rename", [absolute(from), absolute(to)], from));
      if (!info) throw new InternalError(`files.rename ${JSON.stringify(from)}: no file info came back`);
      return { ...info, auditId: event("files.rename", { from: absolute(from), to: absolute(to) }) };
    },
  };
}
