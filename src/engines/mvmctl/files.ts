/**
 * Guest files through `mvmctl machine fs …`: `fs read`'s stdout is the file stream (read in windows
 * of 16 MiB, upstream's default length, until a short window), `fs write`'s stdin is the caller's
 * stream, `fs ls` / `fs stat --json` give the metadata. Tar transfers have no machine verb: they run
 * the guest's own `tar` as a guest process.
 *
 * @example
 * ```ts
 * import { READ_WINDOW } from "./files.ts";
 * console.log(READ_WINDOW); // 16777216
 * ```
 * @module
 */
import { NotADirectoryError, TransportError } from "../../errors.ts";
import { collectText } from "../../streams.ts";
import type { FileInfo } from "../../types.ts";
import type { EngineFiles, EngineProcess, EngineStartOptions, WrittenFile } from "../contract.ts";
import { machineArgv } from "./argv.ts";
import { cliFailure, type MachineCli, readTail } from "./cli.ts";
import { parseList, parseStat } from "./wire.ts";

/** Bytes asked of one `fs read` call when the caller gave no length: upstream's default length. */
export const READ_WINDOW = 16 * 1024 * 1024;

/** What the files need of their machine. */
export interface FilesMachine {
  readonly cli: MachineCli;
  readonly vm: string;
  /** Throws (before any call) when guest verbs are refused on this machine. */
  guard(what: string): void;
  start(argv: string[], opts: EngineStartOptions): Promise<EngineProcess>;
  /** Appends an entry about this machine to the SDK side's audit chain; returns its id. */
  record(event: string, data?: Record<string, unknown>): string;
}

/** The files of one machine. @example `machineFiles(m).stat("/app")` */
export function machineFiles(m: FilesMachine): EngineFiles {
  const { cli, vm } = m;
  const stat = async (path: string) => {
    m.guard("stat a file");
    return parseStat(await cli.json(machineArgv.fsStat(vm, path)), path);
  };

  /** One `fs read` window: resolves once its first bytes (or its end) came, so errors are thrown here. */
  const window = async (path: string, offset: number, length: number) => {
    const args = machineArgv.fsRead(vm, path, offset, length);
    const child = await cli.spawn(args);
    const reader = child.stdout!.getReader();
    const err = readTail(child.stderr!, 64 * 1024);
    const first = await reader.read();
    const end = async () => {
      const [s, e] = await Promise.all([child.status, err]);
      if (s.code !== 0) throw cliFailure([cli.config.bin, ...args], s.code, e, s.signal);
    };
    if (first.done) await end();
    return { reader, first, end };
  };

  return {
    async readStream(path, range) {
      m.guard("read a file");
      let offset = range.offset ?? 0;
      let left = range.length ?? Infinity;
      const ask = () => Math.min(left, READ_WINDOW);
      let w = await window(path, offset, ask());
      let inWindow = 0;
      let pending: Uint8Array | undefined = w.first.done ? undefined : w.first.value;
      return new ReadableStream<Uint8Array>({
        async pull(c) {
          for (;;) {
            if (pending) {
              const v = pending;
              pending = undefined;
              inWindow += v.length;
              offset += v.length;
              left -= v.length;
              return c.enqueue(v);
            }
            const r = await w.reader.read();
            if (!r.done) {
              pending = r.value;
              continue;
            }
            try {
              await w.end();
            } catch (e) {
              return c.error(e);
            }
            // a full window may have more after it; a short one was the end of the file
            const asked = Math.min(left + inWindow, READ_WINDOW);
            if (left <= 0 || inWindow < asked) return c.close();
            inWindow = 0;
            try {
              w = await window(path, offset, ask());
            } catch (e) {
              return c.error(e);
            }
            if (w.first.done) return c.close();
            pending = w.first.value;
          }
        },
        cancel: (reason) => w.reader.cancel(reason),
      }, { highWaterMark: 0 });
    },

    async write(path, data, opts): Promise<WrittenFile> {
      m.guard("write a file");
      await cli.capture(machineArgv.fsWrite(vm, path, opts), data, { timeout: false });
      const info = await stat(path);
      return { ...info, auditId: m.record("files.write", { path, size: info.size }) };
    },

    async list(path): Promise<FileInfo[]> {
      m.guard("list a folder");
      return parseList(await cli.json(machineArgv.fsLs(vm, path)), path);
    },

    stat,

    async mkdir(path, opts) {
      m.guard("make a folder");
      await cli.capture(machineArgv.fsMkdir(vm, path, opts));
      return { ...(await stat(path)), auditId: m.record("files.mkdir", { path }) };
    },

    async remove(path, opts) {
      m.guard("remove a file");
      await cli.capture(machineArgv.fsRm(vm, path, opts.recursive));
      return m.record("files.remove", { path, recursive: opts.recursive });
    },

    async rename(from, to) {
      m.guard("rename a file");
      await cli.capture(machineArgv.fsMv(vm, from, to));
      return { ...(await stat(to)), auditId: m.record("files.rename", { from, to }) };
    },

    async writeTar(dir, tar) {
      m.guard("unpack a tar");
      await cli.capture(machineArgv.fsMkdir(vm, dir, { mode: 0o755, parents: true }));
      const p = await m.start(["tar", "-x", "-f", "-", "-C", dir], { env: {} });
      const [, err, s] = await Promise.all([tar.pipeTo(p.stdin), collectText(p.stderr), p.status, p.stdout.cancel()]);
      if (s.exitCode !== 0) {
        throw new TransportError(
          `unpacking a tar into ${dir} failed (the guest's tar exited ${s.exitCode ?? s.signal}): ${err.trim().slice(0, 300)}`,
        );
      }
      return "";
    },

    async readTar(dir) {
      const info = await stat(dir);
      if (info.type !== "dir") throw new NotADirectoryError(`${dir} is not a directory`, { details: { path: dir } });
      const p = await m.start(["tar", "-c", "-f", "-", "-C", dir, "."], { env: {} });
      p.stdin.close().catch(() => {});
      const err = collectText(p.stderr);
      const reader = p.stdout.getReader();
      return new ReadableStream<Uint8Array>({
        async pull(c) {
          const r = await reader.read();
          if (!r.done) return c.enqueue(r.value);
          const s = await p.status;
          if (s.exitCode !== 0) {
            c.error(
              new TransportError(
                `packing ${dir} failed (the guest's tar exited ${s.exitCode ?? s.signal}): ${(await err).trim().slice(0, 300)}`,
              ),
            );
          } else c.close();
        },
        cancel: async (reason) => {
          await reader.cancel(reason);
          await p.kill("SIGKILL").catch(() => {});
        },
      });
    },
  };
}
