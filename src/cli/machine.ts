/**
 * `mvm machine …`: upstream's `mvmctl machine` verbs, with the same argv and outputs, over the
 * SDK's local engine, so `MVM_CLI_BIN=<this CLI>` makes the SDK's mvmctl engine drive real local
 * sandboxes. Outputs: the `--up-json` boot envelope, `ls --json` records, `fs ls/stat --json`, a
 * pid token from `proc start` (a detached command's id), and `proc wait` exiting with the guest's
 * code (128+N with `killed by signal N`, 124 with `timed out` as its last stderr line). The CLI's
 * own failures print `mvm: CODE: message` and exit 255 from `proc wait` (other verbs: 1 or 2).
 *
 * @example
 * ```ts
 * import { MACHINE_VERBS } from "./machine.ts";
 * console.log(Object.keys(MACHINE_VERBS).includes("proc wait")); // true
 * ```
 * @module
 */
import { NotFoundError, UnsupportedError } from "../errors.ts";
import { signalName, SIGNALS } from "../engines/mvmctl/argv.ts";
import { Sandbox } from "../sandbox.ts";
import { Snapshot, type SnapshotInfo } from "../snapshot.ts";
import type { FileInfo, SandboxInfo } from "../types.ts";
import { parseTtl } from "../ttl.ts";
import { checkSandboxId } from "../validate.ts";
import { type FlagSpec, num, pairs, parseArgs, type Parsed, usage } from "./args.ts";
import { print, printErr, stderrStream, stdinStream, stdoutStream } from "./io.ts";
import { PEOPLE_VERBS, table, type Verb } from "./people.ts";

/** One machine verb: its flags, how many positionals it takes, and what it does. */
interface MachineVerb {
  usage: string;
  flags: Record<string, FlagSpec>;
  /** Positionals before `--` (exactly), or `[min, max]`. */
  positionals: number | [number, number];
  run(a: Parsed): Promise<number>;
}

/** The sandbox a `<vm>` argument names: an id (`sbx-…`) or a name. */
async function resolve(vm: string): Promise<Sandbox> {
  if (/^sbx-[a-z0-9]{12}$/.test(vm)) return await Sandbox.connect(vm, { engine: "local" });
  const hit = (await Sandbox.list({ engine: "local" })).find((s) => s.name === vm);
  if (!hit) throw new NotFoundError(`no live machine named ${JSON.stringify(vm)} (mvm machine ls --json lists them)`, { details: { vm } });
  return await Sandbox.connect(hit.id, { engine: "local" });
}

const epoch = (iso: string) => Date.parse(iso) / 1000;
const kind = (t: FileInfo["type"]) => t;

/** A SandboxInfo as upstream's `machine ls --json` record. */
function record(s: SandboxInfo): Record<string, unknown> {
  return {
    name: s.name ?? s.id,
    id: s.id,
    kind: "sandbox",
    status: s.state,
    build_mode: "dev",
    source: s.image,
    backend: "local",
    cpus: s.limits.cpu ?? null,
    memory_mib: s.limits.memoryMb ?? null,
    readiness: s.state === "running" ? "ready" : "not-ready",
    ports: [],
    tags: s.tags,
    expires_at: s.expiresAt,
    created_at: s.createdAt,
  };
}

/** A SnapshotInfo as upstream's checkpoint metadata (`vm_id`, `expires_unix`, `size_bytes`, `epoch`, `skipped` are ours). */
function checkpoint(s: SnapshotInfo, vm?: string): Record<string, unknown> {
  return {
    id: s.id,
    class: s.class,
    vm_name: vm ?? s.sandboxId,
    vm_id: s.sandboxId,
    tag: s.name ?? null,
    parent: s.parent,
    created_unix: Math.floor(epoch(s.createdAt)),
    expires_unix: s.expiresAt === null ? null : Math.floor(epoch(s.expiresAt)),
    content: s.digests.content,
    meta_digest: s.digests.root,
    audit_ref: s.auditId,
    size_bytes: s.sizeBytes,
    epoch: s.epoch,
    skipped: s.skipped,
  };
}

/** Detaches a new machine (removing it if that fails) and prints its boot envelope (or its id). */
async function boot(sb: Sandbox, upJson: boolean): Promise<void> {
  try {
    await sb.detach();
  } catch (e) {
    await sb.destroy().catch(() => {});
    throw e;
  }
  await (upJson ? json({ schema_version: 1, vm_id: sb.id, build_mode: "dev" }) : print(`${sb.id}\n`));
  await sb.disconnect();
}

async function withVm<T>(vm: string, fn: (sb: Sandbox) => Promise<T>): Promise<T> {
  const sb = await resolve(vm);
  try {
    return await fn(sb);
  } finally {
    await sb.disconnect().catch(() => {});
  }
}

const json = (v: unknown) => print(JSON.stringify(v) + "\n");
const str = (a: Parsed, k: string) => a.flags[k] as string | undefined;

/** The machine verbs, by their words (`"proc wait"`). */
export const MACHINE_VERBS: Record<string, MachineVerb> = {
  run: {
    usage: "machine run -d --up-json --name NAME (--manifest TEMPLATE | --image IMAGE) [--tag K=V]... --ttl Ns",
    flags: {
      d: { kind: "bool", short: "d" },
      "up-json": { kind: "bool" },
      name: { kind: "string" },
      manifest: { kind: "string" },
      image: { kind: "string" },
      env: { kind: "list" },
      "allow-host": { kind: "list" },
      tag: { kind: "list" },
      ttl: { kind: "string" },
      port: { kind: "list" },
    },
    positionals: 0,
    async run(a) {
      if (!a.flags.d) throw new UnsupportedError("machine run without -d would hold this command for the machine's life; pass -d");
      if (a.flags.env) {
        throw new UnsupportedError("a persistent machine run refuses --env (as upstream): pass env per process (proc start -e)");
      }
      if (a.flags.port) throw new UnsupportedError("--port: the local engine publishes no ports");
      const name = str(a, "name");
      if (!name) throw usage("machine run needs --name");
      if (a.flags.manifest && a.flags.image) throw usage("give --manifest or --image, not both");
      const ttl = str(a, "ttl");
      const hosts = (a.flags["allow-host"] as string[] | undefined) ?? [];
      const opts: Parameters<typeof Sandbox.create>[0] & object = {
        engine: "local",
        name,
        tags: pairs(a.flags.tag as string[] | undefined, "--tag"),
      };
      if (a.flags.manifest) opts.template = str(a, "manifest")!;
      else if (a.flags.image) opts.image = str(a, "image")!;
      if (ttl !== undefined) opts.ttl = ttl;
      if (hosts.length) {
        const { NetworkPolicy } = await import("../policy.ts");
        let p = NetworkPolicy.denyByDefault();
        for (const h of hosts) {
          const m = /^(.+):(\d+)$/.exec(h);
          if (!m) throw usage(`--allow-host takes host:port, got ${JSON.stringify(h)}`);
          p = p.allow(m[1]!, Number(m[2]));
        }
        opts.network = p;
      }
      await printErr(`mvm machine run: booting ${name} on the local engine\n`);
      await boot(await Sandbox.create(opts), a.flags["up-json"] === true);
      return 0;
    },
  },

  ls: {
    usage: "machine ls [--json] [--tag K=V]...",
    flags: { json: { kind: "bool" }, tag: { kind: "list" } },
    positionals: 0,
    async run(a) {
      const list = await Sandbox.list({ engine: "local", tags: pairs(a.flags.tag as string[] | undefined, "--tag") });
      if (a.flags.json) await json(list.map(record));
      else await print(table([["NAME", "ID", "STATUS", "EXPIRES"], ...list.map((s) => [s.name ?? s.id, s.id, s.state, s.expiresAt])]));
      return 0;
    },
  },

  stop: {
    usage: "machine stop VM --yes",
    flags: { yes: { kind: "bool" } },
    positionals: 1,
    async run(a) {
      if (!a.flags.yes) throw usage("machine stop asks for --yes");
      await withVm(a.positionals[0]!, (sb) => sb.stop());
      return 0;
    },
  },

  rm: {
    usage: "machine rm VM [--force]",
    flags: { force: { kind: "bool" } },
    positionals: 1,
    async run(a) {
      const sb = await resolve(a.positionals[0]!);
      await sb.destroy();
      return 0;
    },
  },

  pause: {
    usage: "machine pause VM   (freezes every process: the cgroup freezer, memory stays in RAM)",
    flags: { "primed-barrier": { kind: "bool" }, "primed-timeout": { kind: "string" } },
    positionals: 1,
    async run(a) {
      if (a.flags["primed-barrier"]) {
        throw new UnsupportedError("--primed-barrier: the local engine has no guest agent to prime before pausing; omit it");
      }
      num(a.flags["primed-timeout"], "--primed-timeout");
      const vm = a.positionals[0]!;
      await withVm(vm, (sb) => sb.pause());
      // upstream's shape is `<vm>: paused (epoch N, vmstate X B, mem Y B)`; nothing is written to disk here
      await print(`${vm}: paused (cgroup freezer, memory kept in RAM)\n`);
      return 0;
    },
  },

  resume: {
    usage: "machine resume VM [--warm]   (--warm is what the freezer always does: memory was never left)",
    flags: { warm: { kind: "bool" } },
    positionals: 1,
    async run(a) {
      const vm = a.positionals[0]!;
      await withVm(vm, (sb) => sb.resume());
      await print(`${vm}: resumed\n`);
      return 0;
    },
  },

  "set-ttl": {
    usage: "machine set-ttl VM DURATION   (30m, 1h, 3600s, 3600: the machine ends that long from now)",
    flags: {},
    positionals: 2,
    async run(a) {
      const [vm, dur] = [a.positionals[0]!, a.positionals[1]!];
      const seconds = parseTtl(dur, "DURATION");
      const expires = await withVm(vm, async (sb) => {
        await sb.setTtl(seconds);
        return (await sb.info()).expiresAt;
      });
      await print(`${vm}: ttl set to ${seconds}s (expires ${expires})\n`);
      return 0;
    },
  },

  logs: {
    usage: "machine logs VM [--follow] [--lines N]",
    flags: { follow: { kind: "bool", short: "f" }, lines: { kind: "string" } },
    positionals: 1,
    async run(a) {
      const lines = num(a.flags.lines, "--lines");
      await withVm(a.positionals[0]!, async (sb) => {
        if (a.flags.follow) {
          for await (const ev of sb.logs({ follow: true })) await print(JSON.stringify(ev) + "\n");
          return;
        }
        const all = [];
        for await (const ev of sb.logs()) all.push(ev);
        for (const ev of lines === undefined ? all : all.slice(-lines)) await print(JSON.stringify(ev) + "\n");
      });
      return 0;
    },
  },

  "proc start": {
    usage: "machine proc start VM [-e K=V]... [--cwd DIR] -- ARGV...",
    flags: { env: { kind: "list", short: "e" }, cwd: { kind: "string" } },
    positionals: [2, Infinity],
    async run(a) {
      if (a.dashAt !== 1) throw usage("machine proc start VM [-e K=V]... [--cwd DIR] -- ARGV...: the command goes after --");
      const argv = a.positionals.slice(1);
      const id = await withVm(a.positionals[0]!, async (sb) => {
        const opts: { env: Record<string, string>; detached: true; cwd?: string } = {
          env: pairs(a.flags.env as string[] | undefined, "-e"),
          detached: true,
        };
        if (a.flags.cwd !== undefined) opts.cwd = str(a, "cwd")!;
        const p = await sb.commands.start(argv, opts);
        return p.id!;
      });
      await print(id + "\n");
      return 0;
    },
  },

  "proc wait": {
    usage: "machine proc wait VM TOKEN [--timeout SECONDS]",
    flags: { timeout: { kind: "string" } },
    positionals: 2,
    async run(a) {
      const timeout = num(a.flags.timeout, "--timeout");
      return await withVm(a.positionals[0]!, async (sb) => {
        const p = await sb.commands.connect(a.positionals[1]!, { from: "start" });
        let timedOut = false;
        const timer = timeout === undefined ? undefined : setTimeout(() => {
          timedOut = true;
          p.kill("SIGKILL").catch(() => {});
        }, timeout * 1000);
        const [s] = await Promise.all([p.status, p.stdout.pipeTo(stdoutStream()), p.stderr.pipeTo(stderrStream())]);
        clearTimeout(timer);
        if (timedOut || s.timedOut) {
          await printErr("timed out\n");
          return 124;
        }
        if (s.signal) {
          const n = SIGNALS[s.signal] ?? s.exitCode - 128;
          await printErr(`killed by signal ${n}\n`);
          return 128 + n;
        }
        return s.exitCode;
      });
    },
  },

  "proc stdin": {
    usage: "machine proc stdin VM TOKEN   (bytes on this command's stdin)",
    flags: {},
    positionals: 2,
    async run(a) {
      await withVm(a.positionals[0]!, async (sb) => {
        const p = await sb.commands.connect(a.positionals[1]!);
        await stdinStream().pipeTo(p.stdin);
      });
      return 0;
    },
  },

  "proc signal": {
    usage: "machine proc signal VM TOKEN SIGNUM",
    flags: {},
    positionals: 3,
    async run(a) {
      const n = Number(a.positionals[2]);
      if (!Number.isInteger(n) || n <= 0 || n > 64) throw usage(`SIGNUM must be a signal number, got ${JSON.stringify(a.positionals[2])}`);
      await withVm(a.positionals[0]!, async (sb) => (await sb.commands.connect(a.positionals[1]!)).kill(signalName(n)));
      return 0;
    },
  },

  "proc kill": {
    usage: "machine proc kill VM TOKEN",
    flags: {},
    positionals: 2,
    async run(a) {
      await withVm(a.positionals[0]!, async (sb) => (await sb.commands.connect(a.positionals[1]!)).kill("SIGKILL"));
      return 0;
    },
  },

  "fs write": {
    usage: "machine fs write VM PATH --mode MODE [--create-parents]   (bytes on this command's stdin)",
    flags: { mode: { kind: "string" }, "create-parents": { kind: "bool" }, "follow-symlinks": { kind: "bool" } },
    positionals: 2,
    async run(a) {
      if (a.flags["follow-symlinks"]) {
        throw new UnsupportedError("--follow-symlinks: the local engine writes a path as it is, never through a symlink");
      }
      const mode = num(a.flags.mode, "--mode") ?? 0o644;
      await withVm(
        a.positionals[0]!,
        (sb) => sb.files.write(a.positionals[1]!, stdinStream(), { mode, createParents: a.flags["create-parents"] === true }),
      );
      return 0;
    },
  },

  "fs read": {
    usage: "machine fs read VM PATH [--offset N] [--length N]   (raw bytes on stdout; default length 16 MiB)",
    flags: { offset: { kind: "string" }, length: { kind: "string" } },
    positionals: 2,
    async run(a) {
      const offset = num(a.flags.offset, "--offset") ?? 0;
      const length = num(a.flags.length, "--length") ?? 16 * 1024 * 1024;
      await withVm(a.positionals[0]!, async (sb) => {
        const size = (await sb.files.stat(a.positionals[1]!)).size;
        // a read at or past the end is empty, as read(2) is
        if (offset >= size) return;
        await (await sb.files.readStream(a.positionals[1]!, { offset, length: Math.min(length, size - offset) })).pipeTo(stdoutStream());
      });
      return 0;
    },
  },

  "fs ls": {
    usage: "machine fs ls VM PATH [--json]",
    flags: { json: { kind: "bool" } },
    positionals: 2,
    async run(a) {
      const list = await withVm(a.positionals[0]!, (sb) => sb.files.list(a.positionals[1]!));
      if (a.flags.json) {
        await json(list.map((f) => ({ name: f.name, kind: kind(f.type), size: f.size, mode: f.mode, mtime: epoch(f.mtime) })));
      } else await print(list.map((f) => `${f.type === "dir" ? f.name + "/" : f.name}\n`).join(""));
      return 0;
    },
  },

  "fs stat": {
    usage: "machine fs stat VM PATH [--json] [--no-follow]",
    flags: { json: { kind: "bool" }, "no-follow": { kind: "bool" } },
    positionals: 2,
    async run(a) {
      const f = await withVm(a.positionals[0]!, (sb) => sb.files.stat(a.positionals[1]!));
      if (f.type === "symlink" && !a.flags["no-follow"]) {
        throw new UnsupportedError(
          `${f.path} is a symlink; the local engine reports it as itself and does not follow it: pass --no-follow`,
        );
      }
      const out = { canonical_path: f.path, kind: kind(f.type), size: f.size, mode: f.mode, mtime: epoch(f.mtime) };
      await (a.flags.json ? json(out) : print(`${out.canonical_path} ${out.kind} ${out.size} bytes mode ${out.mode.toString(8)}\n`));
      return 0;
    },
  },

  "fs mkdir": {
    usage: "machine fs mkdir VM PATH --mode MODE [--parents]",
    flags: { mode: { kind: "string" }, parents: { kind: "bool", short: "p" } },
    positionals: 2,
    async run(a) {
      const mode = num(a.flags.mode, "--mode") ?? 0o755;
      await withVm(a.positionals[0]!, (sb) => sb.files.mkdir(a.positionals[1]!, { parents: a.flags.parents === true, mode }));
      return 0;
    },
  },

  "fs rm": {
    usage: "machine fs rm VM PATH [--recursive]",
    flags: { recursive: { kind: "bool", short: "r" } },
    positionals: 2,
    async run(a) {
      await withVm(a.positionals[0]!, (sb) => sb.files.remove(a.positionals[1]!, { recursive: a.flags.recursive === true }));
      return 0;
    },
  },

  "fs mv": {
    usage: "machine fs mv VM FROM TO",
    flags: {},
    positionals: 3,
    async run(a) {
      await withVm(a.positionals[0]!, (sb) => sb.files.rename(a.positionals[1]!, a.positionals[2]!));
      return 0;
    },
  },

  "checkpoint create": {
    usage: "machine checkpoint create VM --class fs-quick|vm-full [--tag T] [--json]   (a sealed snapshot of the files; kept 7 days)",
    flags: { class: { kind: "string" }, tag: { kind: "string" }, json: { kind: "bool" } },
    positionals: 1,
    async run(a) {
      const cls = str(a, "class");
      if (cls !== "fs-quick" && cls !== "vm-full") throw usage("machine checkpoint create needs --class fs-quick or --class vm-full");
      const tag = str(a, "tag");
      const snap = await withVm(
        a.positionals[0]!,
        (sb) => sb.snapshot({ class: cls === "vm-full" ? "vm_full" : "fs_quick", ...(tag === undefined ? {} : { name: tag }) }),
      );
      await (a.flags.json ? json(checkpoint(snap, a.positionals[0]!)) : print(`${snap.id}\n`));
      return 0;
    },
  },

  "checkpoint ls": {
    usage: "machine checkpoint ls [--json]",
    flags: { json: { kind: "bool" } },
    positionals: 0,
    async run(a) {
      const list = await Snapshot.list({ engine: "local" });
      if (a.flags.json) await json(list.map((s) => checkpoint(s)));
      else await print(table([["ID", "VM", "TAG", "CREATED"], ...list.map((s) => [s.id, s.sandboxId, s.name ?? "", s.createdAt])]));
      return 0;
    },
  },

  "checkpoint rm": {
    usage: "machine checkpoint rm ID",
    flags: {},
    positionals: 1,
    async run(a) {
      await Snapshot.delete(a.positionals[0]!, { engine: "local" });
      return 0;
    },
  },

  "checkpoint fork": {
    usage: "machine checkpoint fork ID --new-id NAME --boot   (a detached machine from the checkpoint; prints the --up-json envelope)",
    flags: { "new-id": { kind: "string" }, boot: { kind: "bool" } },
    positionals: 1,
    async run(a) {
      if (!a.flags.boot) {
        throw new UnsupportedError("machine checkpoint fork without --boot: the local engine cannot keep a machine unbooted; pass --boot");
      }
      const name = str(a, "new-id");
      if (!name) throw usage("machine checkpoint fork needs --new-id NAME");
      await boot(await Sandbox.create({ engine: "local", name, snapshot: a.positionals[0]! }), true);
      return 0;
    },
  },

  "checkpoint restore": {
    usage: "machine checkpoint restore ID   (refused: the local engine restores into a new machine, see checkpoint fork)",
    flags: {},
    positionals: 1,
    run: () =>
      Promise.reject(
        new UnsupportedError(
          "machine checkpoint restore: the local engine cannot roll a machine back in place; use `machine checkpoint fork ID --new-id NAME --boot`",
        ),
      ),
  },

  cp: {
    usage: "machine cp SRC DST   (the machine's side written VM:/path)",
    flags: {},
    positionals: 2,
    run: (a) => PEOPLE_VERBS.cp!.run(a),
  },
};

/** Finds the machine verb the words name (`proc wait`), and the rest of the argv. */
function pick(args: readonly string[]): { name: string; verb: MachineVerb; rest: string[] } | null {
  for (const n of [2, 1]) {
    const name = args.slice(0, n).join(" ");
    const verb = MACHINE_VERBS[name];
    if (verb) return { name, verb, rest: args.slice(n) };
  }
  return null;
}

/** Parses a machine verb's argv, checking its positionals (exported for the fixture tests). @example `parseMachine(["ls", "--json"])` */
export function parseMachine(args: readonly string[]): { name: string; verb: MachineVerb; parsed: Parsed } {
  const hit = pick(args);
  if (!hit) throw usage(`no machine verb ${JSON.stringify(args.slice(0, 2).join(" "))}; mvm help machine lists them`);
  const parsed = parseArgs(hit.rest, hit.verb.flags);
  const [min, max] = typeof hit.verb.positionals === "number" ? [hit.verb.positionals, hit.verb.positionals] : hit.verb.positionals;
  const before = parsed.dashAt ?? parsed.positionals.length;
  if (parsed.dashAt === null ? (before < min || before > max) : parsed.positionals.length < min) {
    throw usage(`usage: mvm ${hit.verb.usage}`);
  }
  // a vm is an id or a name; an id-shaped one is checked here, before anything runs
  const vm = parsed.positionals[0];
  if (vm !== undefined && vm.startsWith("sbx-") && hit.name !== "cp") checkSandboxId(vm, "vm");
  return { name: hit.name, verb: hit.verb, parsed };
}

/** `mvm machine …` as one verb of the command line. */
export const machineVerb: Verb = {
  summary: "upstream's mvmctl machine verbs over the local engine (for MVM_CLI_BIN)",
  help: "mvm machine VERB …   the verbs of `mvmctl machine`, same argv and outputs:\n\n" +
    Object.values(MACHINE_VERBS).map((v) => `  mvm ${v.usage}`).join("\n") +
    "\n\n  VM is a machine's name or id. Failures print `mvm: CODE: message`; `proc wait` exits with the guest's code\n" +
    "  (128+N with `killed by signal N`, 124 with `timed out`), and 255 when it fails itself.",
  flags: {},
  run: () => Promise.reject(usage("machine verbs are parsed by raw()")),
  async raw(args) {
    const { verb, parsed } = parseMachine(args);
    return await verb.run(parsed);
  },
};
