/**
 * The command line's verbs for people: `ls`, `create`, `exec`, `cp`, `logs`, `info`, `pause`, `resume`, `snapshot`, `fork`, `audit verify`, `stop`, `rm`.
 * Each is a {@linkcode Verb}: its help, its flags and what it does, over any engine (`--engine`,
 * default local) through the public `Sandbox` API only.
 *
 * @example
 * ```ts
 * import { PEOPLE_VERBS } from "./people.ts";
 * console.log(Object.keys(PEOPLE_VERBS).join(" ")); // "ls create exec cp logs info pause resume snapshot fork audit stop rm"
 * ```
 * @module
 */
import { mkdirSync, statSync } from "node:fs";
import { NotFoundError } from "../errors.ts";
import { runtime } from "../runtime/mod.ts";
import { Sandbox } from "../sandbox.ts";
import { Snapshot } from "../snapshot.ts";
import type { CommandOptions, CreateOptions, EngineName, FileInfo, SandboxInfo } from "../types.ts";
import type { TransferResult } from "../transfer.ts";
import { type FlagSpec, num, pairs, type Parsed, usage } from "./args.ts";
import { hostFileStream, newHostFile, print, printErr, stderrIsTty, stderrStream, stdinStream, stdoutStream } from "./io.ts";

/** One verb of the command line. */
export interface Verb {
  /** One line: what it does. */
  summary: string;
  /** The usage line(s) and flag help. */
  help: string;
  flags: Record<string, FlagSpec>;
  /** Runs the verb; resolves to the exit code. */
  run(a: Parsed): Promise<number>;
  /** A verb group that parses its own argv (`machine`). */
  raw?(args: string[]): Promise<number>;
}

/** Flags every verb takes. */
export const COMMON_FLAGS: Record<string, FlagSpec> = { engine: { kind: "string" }, help: { kind: "bool", short: "h" } };

/** The engine a verb was asked for (`--engine`), checked. @example `engineOf(parsed)` */
export function engineOf(a: Parsed): EngineName | undefined {
  const e = a.flags.engine;
  if (e === undefined) return undefined;
  if (e !== "local" && e !== "mvmctl") throw usage(`--engine is local or mvmctl, got ${JSON.stringify(e)}`);
  return e;
}

/** `{ engine }` when `--engine` was given, else nothing (the SDK's own choice). */
function engineOpt(a: Parsed): { engine?: EngineName } {
  const e = engineOf(a);
  return e ? { engine: e } : {};
}

function one(a: Parsed, what: string): string {
  if (a.positionals.length !== 1) throw usage(`expected exactly one ${what}, got ${a.positionals.length}`);
  return a.positionals[0]!;
}

const json = (v: unknown) => print(JSON.stringify(v, null, 2) + "\n");

function ago(iso: string, now: number): string {
  const s = Math.round((Date.parse(iso) - now) / 1000);
  if (!Number.isFinite(s)) return "-";
  const abs = Math.abs(s);
  const t = abs < 90
    ? `${abs}s`
    : abs < 5400
    ? `${Math.round(abs / 60)}m`
    : abs < 172800
    ? `${Math.round(abs / 3600)}h`
    : `${Math.round(abs / 86400)}d`;
  return s < 0 ? `${t} ago` : `in ${t}`;
}

/** Rows as a padded table. @example `table([["ID"], ["sbx-1"]])` */
export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((c, i) => i === r.length - 1 ? c : c.padEnd(widths[i]!)).join("  ")).join("\n") + "\n";
}

const tagText = (t: Record<string, string>) => Object.entries(t).map(([k, v]) => `${k}=${v}`).join(",") || "-";

async function connect(a: Parsed, id: string): Promise<Sandbox> {
  return await Sandbox.connect(id, engineOpt(a));
}

// ---- cp

/** `ID:/path` → the guest side; anything else is a host path (write `./a:b` for a host file with a colon). */
function guestSpec(s: string): { id: string; path: string } | null {
  const m = /^([A-Za-z0-9][A-Za-z0-9._-]*):(.*)$/.exec(s);
  return m ? { id: m[1]!, path: m[2] || "/" } : null;
}

const base = (p: string) => p.replace(/\/+$/, "").split("/").at(-1) || "";

/** Counts bytes through a transfer and shows progress on a terminal's stderr for long ones. */
class Progress {
  bytes = 0;
  #last = Date.now();
  #shown = false;
  constructor(readonly label: string) {}
  tap(): TransformStream<Uint8Array, Uint8Array> {
    return new TransformStream({
      transform: (chunk, c) => {
        this.update(this.bytes + chunk.length);
        c.enqueue(chunk);
      },
    });
  }
  /** The bytes moved so far (a folder transfer's `onProgress`). */
  update(bytes: number): void {
    this.bytes = bytes;
    const now = Date.now();
    if (stderrIsTty() && now - this.#last >= 500) {
      this.#last = now;
      this.#shown = true;
      printErr(`\r${this.label}: ${(this.bytes / 1048576).toFixed(1)} MiB`);
    }
  }
  async done(): Promise<void> {
    if (this.#shown) await printErr(`\r${this.label}: ${(this.bytes / 1048576).toFixed(1)} MiB, done\n`);
  }
}

/** Names what a folder transfer left out, on stderr. */
async function reportSkipped(r: TransferResult): Promise<void> {
  for (const s of r.skipped) await printErr(`mvm cp: skipped ${s.path} (${s.reason})\n`);
}

/** A host file or folder into the sandbox: a folder through `files.upload`, its contents into `guest`. */
async function copyIn(sb: Sandbox, host: string, guest: string, p: Progress): Promise<number> {
  const st = statSync(host);
  if (st.isDirectory()) {
    const r = await sb.files.upload(host, guest, { onProgress: (x) => p.update(x.bytes) });
    await reportSkipped(r);
    return r.files + r.dirs + r.symlinks;
  }
  if (!st.isFile()) {
    await printErr(`mvm cp: skipped ${host} (not a regular file or folder)\n`);
    return 0;
  }
  await sb.files.write(guest, (await hostFileStream(host)).pipeThrough(p.tap()), { mode: st.mode & 0o777 });
  return 1;
}

/** A sandbox file or folder out: a folder through `files.download`, into a folder this command makes. */
async function copyOut(sb: Sandbox, guest: string, host: string, info: FileInfo, p: Progress): Promise<number> {
  if (info.type === "dir") {
    // a fresh folder (never one that is already there, a symlink included), so nothing the guest
    // named can be written outside the destination; download writes only new files under it
    mkdirSync(host, { mode: 0o755 });
    const r = await sb.files.download(guest, host, { onProgress: (x) => p.update(x.bytes) });
    await reportSkipped(r);
    return r.files + r.dirs + r.symlinks;
  }
  if (info.type !== "file") {
    await printErr(`mvm cp: skipped ${guest} (a ${info.type}, not a regular file or folder)\n`);
    return 0;
  }
  // the destination is the user's choice
  const out = await newHostFile(host, info.mode, false);
  await (await sb.files.readStream(guest)).pipeThrough(p.tap()).pipeTo(out);
  return 1;
}

function hostIsDir(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

// ---- the verbs

/** The verbs for people, by name. */
export const PEOPLE_VERBS: Record<string, Verb> = {
  ls: {
    summary: "list live sandboxes (a table, or --json)",
    help:
      "mvm ls [--json] [--tag KEY=VALUE]... [--engine local|mvmctl]\n\n  --json   one JSON array of SandboxInfo records\n  --tag    only sandboxes carrying this tag (repeatable; all must match)",
    flags: { json: { kind: "bool" }, tag: { kind: "list" } },
    async run(a) {
      if (a.positionals.length) throw usage("ls takes no arguments");
      const list = await Sandbox.list({ tags: pairs(a.flags.tag as string[] | undefined, "--tag"), ...engineOpt(a) });
      if (a.flags.json) {
        await json(list);
        return 0;
      }
      const now = Date.now();
      const rows = [["ID", "STATE", "NAME", "IMAGE", "CREATED", "EXPIRES", "DETACHED", "TAGS"]];
      for (const s of list) {
        rows.push([
          s.id,
          s.state,
          s.name ?? "-",
          s.image || "-",
          ago(s.createdAt, now),
          ago(s.expiresAt, now),
          s.detached ? "yes" : "no",
          tagText(s.tags),
        ]);
      }
      await print(list.length ? table(rows) : "no live sandboxes\n");
      return 0;
    },
  },

  create: {
    summary: "create a sandbox that outlives this command (until its TTL); prints its id",
    help: "mvm create [--name NAME] [--image IMAGE | --template T] [--ttl 30m] [--cpu N] [--memory MIB] [--pids N]\n" +
      "           [--tmp MIB] [--tag KEY=VALUE]... [--env KEY=VALUE]... [--snapshot SNAP [--no-verify]] [--json] [--engine local|mvmctl]\n\n" +
      "  The sandbox is detached: it lives until its TTL (default 30m) or `mvm rm`.\n  --json   print its SandboxInfo instead of its id\n" +
      "  --snapshot   start from a sealed snapshot (its seal, epoch and digests are checked; --no-verify skips that)",
    flags: {
      name: { kind: "string" },
      image: { kind: "string" },
      template: { kind: "string" },
      ttl: { kind: "string" },
      cpu: { kind: "string" },
      memory: { kind: "string" },
      pids: { kind: "string" },
      tmp: { kind: "string" },
      tag: { kind: "list" },
      env: { kind: "list", short: "e" },
      json: { kind: "bool" },
      snapshot: { kind: "string" },
      "no-verify": { kind: "bool" },
    },
    async run(a) {
      if (a.positionals.length) throw usage("create takes no arguments (use flags)");
      const f = a.flags;
      const opts: CreateOptions = { tags: pairs(f.tag as string[] | undefined, "--tag") };
      const env = pairs(f.env as string[] | undefined, "--env");
      if (Object.keys(env).length) opts.env = env;
      if (f.name !== undefined) opts.name = f.name as string;
      if (f.image !== undefined) opts.image = f.image as string;
      if (f.template !== undefined) opts.template = f.template as string;
      if (f.ttl !== undefined) opts.ttl = /^\d+$/.test(f.ttl as string) ? Number(f.ttl) : f.ttl as string;
      const n = (k: string, flag: string) => num(f[k], flag);
      if (f.cpu !== undefined) opts.cpu = n("cpu", "--cpu")!;
      if (f.memory !== undefined) opts.memoryMb = n("memory", "--memory")!;
      if (f.pids !== undefined) opts.pidsLimit = n("pids", "--pids")!;
      if (f.tmp !== undefined) opts.tmpSizeMb = n("tmp", "--tmp")!;
      if (f.snapshot !== undefined) opts.snapshot = f.snapshot as string;
      if (f["no-verify"]) opts.verify = false;
      const engine = engineOf(a);
      if (engine) opts.engine = engine;
      const sb = await Sandbox.create(opts);
      try {
        await sb.detach();
        if (f.json) await json(await sb.info());
        else await print(sb.id + "\n");
      } catch (e) {
        await sb.destroy().catch(() => {});
        throw e;
      }
      await sb.disconnect();
      return 0;
    },
  },

  exec: {
    summary: "run a command in a sandbox; its output streams, its exit code is this command's",
    help: "mvm exec ID [-i] [-t] [--cwd DIR] [-e KEY=VALUE]... [--timeout SECONDS] -- COMMAND [ARG]...\n\n" +
      "  -i         pass this command's stdin to it (else its stdin is empty)\n" +
      "  -t         run it on a terminal (PTY) of the sandbox's, sized as this one; with -i on a terminal, this\n" +
      "             terminal goes raw (keys, Ctrl-C included, go to the command) and its size changes follow\n" +
      "             (mvm exec -it ID -- sh); stderr is merged into stdout, as on any terminal\n" +
      "  --timeout  kill its whole process tree after SECONDS; exits 124 then\n" +
      "  Exit code: the command's (128+N when signal N ended it).",
    flags: {
      i: { kind: "bool", short: "i" },
      t: { kind: "bool", short: "t" },
      cwd: { kind: "string" },
      env: { kind: "list", short: "e" },
      timeout: { kind: "string" },
    },
    async run(a) {
      const id = a.positionals[0];
      const argv = a.positionals.slice(1);
      if (!id || argv.length === 0) throw usage("exec needs a sandbox id and a command: mvm exec ID -- COMMAND [ARG]...");
      await using sb = await connect(a, id);
      const env = pairs(a.flags.env as string[] | undefined, "--env");
      const opts: CommandOptions = { env };
      if (a.flags.cwd !== undefined) opts.cwd = a.flags.cwd as string;
      const timeoutSeconds = num(a.flags.timeout, "--timeout");
      if (timeoutSeconds !== undefined) opts.timeoutSeconds = timeoutSeconds;
      const term = a.flags.t ? runtime().terminal : undefined;
      // raw mode and size changes only when this side is a terminal too; else the command still gets one
      const live = a.flags.i === true && term?.interactive() === true;
      if (a.flags.t) Object.assign(opts, { pty: true }, term?.size() ?? {});
      const p = await sb.commands.start(argv, opts);
      let stopResize = () => {};
      if (live) {
        term!.setRaw(true);
        stopResize = term!.onResize(() => {
          const size = term!.size();
          if (size) p.resize(size.cols, size.rows).catch(() => {});
        });
      }
      try {
        if (a.flags.i) stdinStream().pipeTo(p.stdin).catch(() => {});
        else p.stdin.close().catch(() => {});
        const [s] = await Promise.all([p.status, p.stdout.pipeTo(stdoutStream()), p.stderr.pipeTo(stderrStream())]);
        if (s.timedOut) {
          await printErr(`${live ? "\r\n" : ""}mvm exec: timed out after ${a.flags.timeout} s; its process tree was killed\n`);
          return 124;
        }
        return s.exitCode;
      } finally {
        stopResize();
        if (live) term!.setRaw(false);
      }
    },
  },

  cp: {
    summary: "copy files or folders between the host and a sandbox (ID:/path is the sandbox's side)",
    help: "mvm cp SRC DST      one of them ID:/path\n\n" +
      "  mvm cp ./app sbx-…:/app        a host folder in (made if missing; into it if it is a folder)\n" +
      "  mvm cp sbx-…:/app/out.txt .    a file out (into a host folder, or to that path)\n" +
      "  Folders go through files.upload / files.download: files, folders and symlinks; other kinds are skipped and named.\n" +
      "  Out of a sandbox, a folder's contents are only ever written into a folder this command made, as new files;\n" +
      "  a sandbox symlink is kept only when it stays inside the copy (relative, no ..), else skipped and named.",
    flags: {},
    async run(a) {
      if (a.positionals.length !== 2) throw usage("cp takes SRC and DST");
      const [src, dst] = a.positionals as [string, string];
      const gs = guestSpec(src);
      const gd = guestSpec(dst);
      if ((gs === null) === (gd === null)) throw usage("cp copies between the host and a sandbox: exactly one side is ID:/path");
      if (gd) {
        await using sb = await connect(a, gd.id);
        let target = gd.path;
        const existing = await sb.files.stat(target).catch(() => null);
        if (existing?.type === "dir" || target.endsWith("/")) target = `${target.replace(/\/+$/, "")}/${base(src)}`;
        const p = new Progress(`${src} → ${gd.id}:${target}`);
        const n = await copyIn(sb, src.replace(/\/+$/, "") || "/", target, p);
        await p.done();
        if (n === 0 && !statSync(src).isDirectory()) return 1;
        return 0;
      }
      await using sb = await connect(a, gs!.id);
      const info = await sb.files.stat(gs!.path);
      let target = dst;
      if (hostIsDir(dst)) target = `${dst.replace(/\/+$/, "")}/${base(gs!.path) || "root"}`;
      else if (info.type === "dir" && dst.endsWith("/")) throw new NotFoundError(`${dst} is not a folder on the host`);
      const p = new Progress(`${gs!.id}:${gs!.path} → ${target}`);
      const n = await copyOut(sb, gs!.path, target, info, p);
      await p.done();
      return n === 0 && info.type !== "dir" ? 1 : 0;
    },
  },

  logs: {
    summary: "print a sandbox's events (-f keeps following until it goes)",
    help:
      "mvm logs ID [-f] [--json]\n\n  -f, --follow  keep printing events as they happen, until the sandbox is gone\n  --json        one JSON object per line",
    flags: { follow: { kind: "bool", short: "f" }, json: { kind: "bool" } },
    async run(a) {
      await using sb = await connect(a, one(a, "sandbox id"));
      for await (const ev of sb.logs({ follow: a.flags.follow === true })) {
        if (a.flags.json) {
          await print(JSON.stringify(ev) + "\n");
          continue;
        }
        const { id: _id, seq: _seq, time, type, ...rest } = ev;
        await print(`${time}  ${type}${Object.keys(rest).length ? "  " + JSON.stringify(rest) : ""}\n`);
      }
      return 0;
    },
  },

  info: {
    summary: "show one sandbox's state, image, lease, limits and tags",
    help: "mvm info ID [--json]",
    flags: { json: { kind: "bool" } },
    async run(a) {
      await using sb = await connect(a, one(a, "sandbox id"));
      const i: SandboxInfo = await sb.info();
      if (a.flags.json) {
        await json(i);
        return 0;
      }
      const lim = Object.entries(i.limits).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v}`).join(",") || "-";
      await print(table([
        ["id", i.id],
        ["state", i.state],
        ["engine", i.engine],
        ["name", i.name ?? "-"],
        ["image", i.image || "-"],
        ["created", i.createdAt],
        ["expires", `${i.expiresAt} (${ago(i.expiresAt, Date.now())})`],
        ["detached", i.detached ? "yes" : "no"],
        ["limits", lim],
        ["tags", tagText(i.tags)],
      ]));
      return 0;
    },
  },

  pause: {
    summary: "freeze every process of sandboxes (state paused; resume thaws them)",
    help: "mvm pause ID...",
    flags: {},
    async run(a) {
      if (a.positionals.length === 0) throw usage("pause needs at least one sandbox id");
      for (const id of a.positionals) {
        await using sb = await connect(a, id);
        await sb.pause();
        await print(`${id} paused\n`);
      }
      return 0;
    },
  },

  resume: {
    summary: "thaw paused sandboxes",
    help: "mvm resume ID...",
    flags: {},
    async run(a) {
      if (a.positionals.length === 0) throw usage("resume needs at least one sandbox id");
      for (const id of a.positionals) {
        await using sb = await connect(a, id);
        await sb.resume();
        await print(`${id} resumed\n`);
      }
      return 0;
    },
  },

  snapshot: {
    summary: "take a sealed snapshot of a sandbox's files (or: snapshot ls, snapshot rm SNAP...)",
    help: "mvm snapshot ID [--name NAME] [--retention 7d|SECONDS|forever] [--json]\nmvm snapshot ls [--json]\nmvm snapshot rm SNAP...\n\n" +
      "  Freezes the sandbox while its files are copied and sealed (HMAC-SHA256 under the host key); prints the snapshot's id.\n" +
      "  --retention   how long it is kept (default 7d); expired snapshots are removed by the next snapshot or ls\n" +
      "  --json        print the SnapshotInfo (ls: an array of them)",
    flags: { name: { kind: "string" }, retention: { kind: "string" }, json: { kind: "bool" } },
    async run(a) {
      const [first, ...rest] = a.positionals;
      if (first === "ls") {
        if (rest.length) throw usage("snapshot ls takes no arguments");
        const list = await Snapshot.list(engineOpt(a));
        if (a.flags.json) await json(list);
        else {
          const now = Date.now();
          const rows = [["ID", "NAME", "SANDBOX", "SIZE", "CREATED", "EXPIRES", "PARENT"]];
          for (const s of list) {
            rows.push([
              s.id,
              s.name ?? "-",
              s.sandboxId,
              String(s.sizeBytes),
              ago(s.createdAt, now),
              s.expiresAt ? ago(s.expiresAt, now) : "never",
              s.parent ?? "-",
            ]);
          }
          await print(list.length ? table(rows) : "no snapshots\n");
        }
        return 0;
      }
      if (first === "rm") {
        if (rest.length === 0) throw usage("snapshot rm needs snapshot ids");
        for (const id of rest) {
          await Snapshot.delete(id, engineOpt(a));
          await print(`${id} removed\n`);
        }
        return 0;
      }
      const id = one(a, "sandbox id (or ls, rm)");
      await using sb = await connect(a, id);
      const r = a.flags.retention as string | undefined;
      const snap = await sb.snapshot({
        ...(a.flags.name === undefined ? {} : { name: a.flags.name as string }),
        ...(r === undefined ? {} : { retention: /^\d+$/.test(r) ? Number(r) : r }),
      });
      await (a.flags.json ? json(snap) : print(snap.id + "\n"));
      return 0;
    },
  },

  fork: {
    summary: "fork a sandbox into a detached sandbox; prints the new id",
    help: "mvm fork ID [--ttl 30m] [--json]\n\n" +
      "  The fork starts from the sandbox's files (a reflink clone where the state root is on XFS/btrfs, else a fresh sealed\n" +
      "  snapshot, checked), outlives this command until its TTL, and changes independently of its parent.\n" +
      "  --json   print its SandboxInfo (forkedFrom says how; restoredFrom names the snapshot, when one was taken)",
    flags: { ttl: { kind: "string" }, json: { kind: "bool" } },
    async run(a) {
      const id = one(a, "sandbox id");
      await using sb = await connect(a, id);
      const t = a.flags.ttl as string | undefined;
      const child = await sb.fork(t === undefined ? {} : { ttl: /^\d+$/.test(t) ? Number(t) : t });
      try {
        await child.detach();
        await (a.flags.json ? json(await child.info()) : print(child.id + "\n"));
      } catch (e) {
        await child.destroy().catch(() => {});
        throw e;
      }
      return 0;
    },
  },

  audit: {
    summary: "verify the state root's signed audit chain (mvm audit verify)",
    help: "mvm audit verify [--state-dir DIR] [--json]\n\n" +
      "  Checks every line of the hash-chained, Ed25519-signed audit log (default: $MVM_STATE_DIR's).\n" +
      "  Exit code: 0 VERIFIED, 1 MISMATCH (the first bad line is named) or NOT_FOUND.",
    flags: { "state-dir": { kind: "string" }, json: { kind: "bool" } },
    async run(a) {
      if (a.positionals.length !== 1 || a.positionals[0] !== "verify") throw usage("audit takes one verb: mvm audit verify");
      const { verifyAudit } = await import("../audit.ts");
      const dir = a.flags["state-dir"] as string | undefined;
      const r = await verifyAudit(dir === undefined ? {} : { stateDir: dir });
      if (a.flags.json) await json(r);
      else {
        const bad = r.firstBad ? `: ${r.firstBad.file} line ${r.firstBad.line}: ${r.firstBad.reason}` : "";
        await print(`${r.status} (${r.entries} entries in ${r.files.length} file${r.files.length === 1 ? "" : "s"})${bad}\n`);
      }
      return r.status === "VERIFIED" ? 0 : 1;
    },
  },

  stop: {
    summary: "stop every process of sandboxes (their files stay until rm)",
    help: "mvm stop ID...",
    flags: {},
    async run(a) {
      if (a.positionals.length === 0) throw usage("stop needs at least one sandbox id");
      for (const id of a.positionals) {
        await using sb = await connect(a, id);
        await sb.stop();
        await print(`${id} stopped\n`);
      }
      return 0;
    },
  },

  rm: {
    summary: "destroy sandboxes and all their state (also --all, optionally by --tag)",
    help: "mvm rm ID...\nmvm rm --all [--tag KEY=VALUE]...\n\n" +
      "  --all   every live sandbox (of this state folder, for the local engine), or those with all the given tags:\n" +
      "          what crashed scripts left behind",
    flags: { all: { kind: "bool" }, tag: { kind: "list" } },
    async run(a) {
      const tags = pairs(a.flags.tag as string[] | undefined, "--tag");
      let ids = a.positionals;
      if (a.flags.all) {
        if (ids.length) throw usage("rm --all takes no ids");
        ids = (await Sandbox.list({ tags, ...engineOpt(a) })).map((s) => s.id);
      } else if (Object.keys(tags).length) throw usage("--tag goes with --all");
      else if (ids.length === 0) throw usage("rm needs sandbox ids, or --all");
      let failed = 0;
      for (const id of ids) {
        try {
          const sb = await connect(a, id);
          await sb.destroy();
          await print(`${id} removed\n`);
        } catch (e) {
          // one that is gone meanwhile (its TTL, another rm) is what was asked
          if (a.flags.all && e instanceof NotFoundError) continue;
          failed++;
          await printErr(`mvm: ${(e as { code?: string }).code ?? "INTERNAL"}: ${id}: ${(e as Error).message}\n`);
        }
      }
      return failed ? 1 : 0;
    },
  },
};
