/**
 * The two POSIX shell programs of the local engine.
 *
 * - The supervisor runs on the host, one per sandbox, in its own session. It
 *   starts bubblewrap, reports the sandbox's init pid, then holds the lease:
 *   it tears the sandbox down when the TTL runs out, when the owning process
 *   dies (unless detached), or when asked (SIGTERM). It costs a shell and a
 *   `sleep`, not a JavaScript runtime.
 * - The agent runs inside the jail, one per file operation, with the same
 *   namespaces, root and credentials as user code, so a path can only reach
 *   the sandbox's own view. It reports failures as `mvm-error CODE message`
 *   on stderr.
 *
 * @example
 * ```ts
 * import { SUPERVISOR_SH } from "./scripts.ts";
 * // spawn("setsid", ["sh", "-c", SUPERVISOR_SH, "mvm-supervisor", dir, ownerPid, ttl, ...bwrapArgv])
 * ```
 * @module
 */
import { CGROUP_FNS } from "./cgroups.ts";

/**
 * Host-side supervisor. Args: state dir, owner pid, TTL seconds, then the bubblewrap argv.
 * Env (optional): MVM_CG_KIND, MVM_CG_V2, MVM_CG_MEM/CPU/PIDS (groups to make), MVM_LIM_MEM/CPU/PIDS
 * (limits), MVM_CG_POOL (names of per-process groups to make under the v2 group, for the SDK). It writes `<dir>/cgroups` (v2 group, memory group, v1 groups to join) for the SDK.
 */
export const SUPERVISOR_SH: string = CGROUP_FNS + String.raw`
set -u
d=$1; owner=$2; ttl=$3; shift 3
bw=""; sl=""; ttlpid=""; all=""; pid=""
now() { date -u +%Y-%m-%dT%H:%M:%S.%3NZ; }
ev() { printf '{"id":"sup-%s-%s","time":"%s","type":"%s","source":"supervisor"%s}\n' "$$" "$(date +%s%N)" "$(now)" "$1" "%{2:-}" >> "$d/events.jsonl" 2>/dev/null; }
alive() { [ -r "/proc/$1/stat" ] || return 1; read -r s < "/proc/$1/stat" 2>/dev/null || return 1; case "$s" in *") Z "*|*") X "*) return 1;; esac; return 0; }
cleanup() {
  trap '' TERM INT HUP
  : > "$d/destroying" 2>/dev/null
  ev destroyed ",\"reason\":\"$1\""
  [ -n "$sl" ] && kill "$sl" 2>/dev/null
  [ -n "$ttlpid" ] && kill "$ttlpid" 2>/dev/null
  # the sandbox's pid 1 first (the kernel then kills everything in its pid namespace, while the
  # host-side nsenters are still there to reap their children), then whatever is left in its groups
  # (cgroup.kill catches forks), then the launcher
  if [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; then
    i=0; while alive "$pid" && [ $i -lt 100 ]; do i=$((i+1)); sleep 0.01; done
  fi
  [ -n "%{MVM_CG_V2:-}" ] && killall "$MVM_CG_V2" KILL
  if [ -n "$bw" ]; then kill -KILL "$bw" 2>/dev/null; wait "$bw" 2>/dev/null; fi
  # sweep retries until each group is gone: a client may still be making a per-process group
  for c in $all; do sweep "$c"; done
  rm -rf "$d"
  exit 0
}
trap 'cleanup destroy' TERM INT HUP
w() { echo "$2" > "$1" 2>/dev/null || { echo "error cannot write $2 to $1"; cleanup failed; }; }
all=""; join=""; memcg=-
if [ -n "%{MVM_CG_V2:-}" ]; then
  if [ "$MVM_CG_KIND" = v2 ]; then
    memcg=$MVM_CG_V2
  else
    for c in "$MVM_CG_MEM" "$MVM_CG_CPU" "$MVM_CG_PIDS"; do [ -n "$c" ] && join="$join $c"; done
    [ -n "$MVM_CG_MEM" ] && memcg=$MVM_CG_MEM
  fi
  all="$MVM_CG_V2$join"
  # one mkdir for the sandbox's groups and the first per-process groups the SDK will use
  pool=""; for q in %{MVM_CG_POOL:-}; do pool="$pool $MVM_CG_V2/$q"; done
  mkdir -p $all $pool 2>/dev/null || { echo "error cannot create the cgroups $all"; cleanup failed; }
  if [ "$MVM_CG_KIND" = v2 ]; then
    [ -n "$MVM_LIM_MEM" ] && { w "$MVM_CG_V2/memory.max" "$MVM_LIM_MEM"; [ -e "$MVM_CG_V2/memory.swap.max" ] && w "$MVM_CG_V2/memory.swap.max" 0; }
    [ -n "$MVM_LIM_CPU" ] && w "$MVM_CG_V2/cpu.max" "$MVM_LIM_CPU 100000"
    [ -n "$MVM_LIM_PIDS" ] && w "$MVM_CG_V2/pids.max" "$MVM_LIM_PIDS"
  else
    if [ -n "$MVM_CG_MEM" ] && [ -n "$MVM_LIM_MEM" ]; then
      w "$MVM_CG_MEM/memory.limit_in_bytes" "$MVM_LIM_MEM"
      [ -e "$MVM_CG_MEM/memory.memsw.limit_in_bytes" ] && w "$MVM_CG_MEM/memory.memsw.limit_in_bytes" "$MVM_LIM_MEM"
    fi
    [ -n "$MVM_CG_CPU" ] && [ -n "$MVM_LIM_CPU" ] && { w "$MVM_CG_CPU/cpu.cfs_period_us" 100000; w "$MVM_CG_CPU/cpu.cfs_quota_us" "$MVM_LIM_CPU"; }
    [ -n "$MVM_CG_PIDS" ] && [ -n "$MVM_LIM_PIDS" ] && w "$MVM_CG_PIDS/pids.max" "$MVM_LIM_PIDS"
  fi
  { echo "$MVM_CG_V2"; echo "$memcg"; for c in $join; do echo "$c"; done; } > "$d/cgroups"
fi
mkfifo -m 600 "$d/info.fifo" "$d/ready.fifo" || { echo "error cannot create fifos in $d"; cleanup failed; }
exec 5<>"$d/ready.fifo"
# bwrap reports its init's pid on fd 3; the sandbox's first command says "ready" on fd 4 once every
# mount is in place; if bwrap ends first, the launcher says "exit N" on the same fifo.
# The launcher dies with this supervisor (parent-death signal), and bwrap with the launcher, so a
# killed supervisor takes its sandbox with it (the next create or list removes its folder).
MVM_SELF_CG="%{MVM_CG_V2:-} $join" MVM_D="$d" MVM_INNER='for c in $MVM_SELF_CG; do echo $$ > "$c/cgroup.procs" || exit 125; done
  exec 3>"$MVM_D/info.fifo" 4>"$MVM_D/ready.fifo" 5>&- </dev/null >/dev/null 2>"$MVM_D/bwrap.err"
  unset MVM_SELF_CG MVM_D MVM_INNER; exec "$@"' \
  setpriv --pdeathsig KILL -- sh -c 'sh -c "$MVM_INNER" sh "$@"; echo "exit $?" >&5' mvm-launcher "$@" </dev/null >/dev/null 2>&1 &
bw=$!
info=""; while IFS= read -r line; do info="$info$line"; done < "$d/info.fifo"
read -r ready <&5
exec 5<&-
rm -f "$d/info.fifo" "$d/ready.fifo"
case "$info:$ready" in
  *'"child-pid"'*:ready) ;;
  *) wait "$bw" 2>/dev/null; bw=""; err=$(head -c 2000 "$d/bwrap.err" 2>/dev/null | tr '\n' ' '); echo "error $err"; cleanup failed;;
esac
pid=%{info#*'"child-pid"'}; pid=%{pid#*:}; pid=%{pid%%,*}; pid=$(echo $pid)
echo "$pid" > "$d/init.pid"
echo "$$" > "$d/supervisor.pid"
echo "ready $pid $$"
exec </dev/null >/dev/null 2>&1
sleep "$ttl" & ttlpid=$!
ev started ",\"initPid\":$pid,\"ttlSeconds\":$ttl"
reason=""
while :; do
  if [ ! -e "$d/detached" ] && ! alive "$owner"; then reason=owner-exited; break; fi
  alive "$ttlpid" || { reason=ttl-expired; break; }
  if ! alive "$bw" && [ ! -e "$d/stopped" ]; then reason=init-exited; break; fi
  sleep 0.5 & sl=$!; wait "$sl"; sl=""
done
cleanup "$reason"
`.replaceAll("%{", "${");

/**
 * In-jail agent for file operations. Usage: `sh -c AGENT_SH mvm-agent OP ARGS…`.
 * Ops: read PATH OFFSET LENGTH | write PATH MODE PARENTS | list PATH | stat PATH |
 * mkdir PATH MODE PARENTS | remove PATH RECURSIVE | rename FROM TO | tarin DIR | tarout DIR | cleanup DIR NONCE |
 * cwdcheck PATH.
 */
export const AGENT_SH: string = String.raw`
export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
unset IFS
fail() { printf 'mvm-error %s %s\n' "$1" "$2" >&2; exit 3; }
# a tool's own failure: the SDK classifies its message (code "?")
run() { out=$("$@" 2>&1) || fail "?" "$out"; }
missing() {
  q=$1
  while [ "$q" != / ] && [ -n "$q" ]; do
    q=$(dirname -- "$q")
    if [ -e "$q" ] && [ ! -d "$q" ]; then fail NOT_A_DIRECTORY "$1: Not a directory ($q is not a directory)"; fi
  done
  fail NOT_FOUND "$1: No such file or directory"
}
info() { find "$1" -maxdepth 0 -printf '%y\t%s\t%m\t%T@\t%p\0' 2>/dev/null; }
op=$1; shift
case "$op" in
  read)
    p=$1
    if [ -d "$p" ]; then fail IS_A_DIRECTORY "$p is a directory"; fi
    if [ ! -e "$p" ]; then missing "$p"; fi
    if [ ! -f "$p" ]; then fail INVALID_INPUT "$p is not a regular file (fifo, socket or device)"; fi
    [ -r "$p" ] || fail PERMISSION_DENIED "$p: Permission denied"
    if [ "$3" = "-" ]; then exec dd if="$p" bs=65536 iflag=skip_bytes,nonblock skip="$2" status=none
    else exec dd if="$p" bs=65536 iflag=skip_bytes,count_bytes,nonblock skip="$2" count="$3" status=none; fi;;
  write)
    p=$1; dir=%{p%/*}; [ -n "$dir" ] || dir=/
    if [ -d "$p" ] && [ ! -L "$p" ]; then fail IS_A_DIRECTORY "$p is a directory"; fi
    if [ -e "$dir" ] && [ ! -d "$dir" ]; then fail NOT_A_DIRECTORY "$dir: Not a directory"; fi
    if [ "$3" = 1 ] && [ ! -d "$dir" ]; then run mkdir -p -- "$dir"; fi
    [ -e "$dir" ] || missing "$dir"
    [ -d "$dir" ] || fail NOT_A_DIRECTORY "$dir: Not a directory"
    tmp="$dir/.mvm-write.$$.%{MVM_NONCE:-0}"
    trap 'rm -f -- "$tmp"' EXIT
    trap 'rm -f -- "$tmp"; exit 143' TERM INT PIPE
    # a fresh name, created exclusively (noclobber), with the mode's permission bits from the start
    # when a umask can give them (no chmod then), else private until chmod
    if [ $(( 0$2 & ~0666 )) -eq 0 ] && [ $(( 0$2 & 0200 )) -ne 0 ]; then umask "$(printf %03o $(( 0666 & ~0$2 )))"; needmod=0; else umask 077; needmod=1; fi
    out=$( (set -C; : > "$tmp") 2>&1) || fail "?" "$out"
    exec 6>>"$tmp" || fail INTERNAL "cannot open $tmp"
    out=$(cat 2>&1 >&6) || fail "?" "$out"
    exec 6>&-
    [ $needmod = 0 ] || run chmod "$2" -- "$tmp"
    run mv -f -T -- "$tmp" "$p"
    trap - EXIT TERM INT PIPE
    info "$p";;
  list)
    p=$1
    [ -e "$p" ] || missing "$p"
    [ -d "$p" ] || fail NOT_A_DIRECTORY "$p: Not a directory"
    [ -r "$p" ] && [ -x "$p" ] || fail PERMISSION_DENIED "$p: Permission denied"
    exec find -H "$p" -mindepth 1 -maxdepth 1 -printf '%y\t%s\t%m\t%T@\t%p\0';;
  stat)
    [ -e "$1" ] || [ -L "$1" ] || missing "$1"
    info "$1";;
  mkdir)
    if [ "$3" = 1 ]; then run mkdir -p -m "$2" -- "$1"; [ -d "$1" ] || fail NOT_A_DIRECTORY "$1: Not a directory"
    else run mkdir -m "$2" -- "$1"; fi;;
  remove)
    [ -e "$1" ] || [ -L "$1" ] || missing "$1"
    if [ -d "$1" ] && [ ! -L "$1" ]; then
      if [ "$2" = 1 ]; then run rm -rf --one-file-system -- "$1"; else run rmdir -- "$1"; fi
    else run rm -f -- "$1"; fi;;
  rename)
    [ -e "$1" ] || [ -L "$1" ] || missing "$1"
    run mv -f -T -- "$1" "$2";;
  tarin)
    if [ ! -d "$1" ]; then [ -e "$1" ] && fail NOT_A_DIRECTORY "$1: Not a directory"; run mkdir -p -- "$1"; fi
    out=$(tar -x -f - -C "$1" --no-same-owner --no-overwrite-dir 2>&1) || fail "?" "tar: $out";;
  tarout)
    [ -e "$1" ] || missing "$1"
    [ -d "$1" ] || fail NOT_A_DIRECTORY "$1: Not a directory"
    exec tar -c -f - -C "$1" .;;
  cleanup)
    # temporary files of a write that was killed: .mvm-write.<pid>.<nonce> in its directory
    case "$2" in *[!0-9a-f]*|"") fail INVALID_INPUT "bad nonce";; esac
    rm -f -- "$1"/.mvm-write.*."$2";;
  cwdcheck)
    [ -d "$1" ] || { [ -e "$1" ] && fail NOT_A_DIRECTORY "$1: Not a directory"; missing "$1"; };;
  *) fail INTERNAL "unknown op $op";;
esac
`.replaceAll("%{", "${");

/**
 * The runner: a shell inside the sandbox (already in its namespaces and root,
 * capabilities dropped) that waits for one line on stdin — the job — and runs
 * it; the rest of stdin belongs to the job. Spawned ahead of need, so a
 * command's critical path is one line written and one `exec`. The job line is
 * built by the SDK from single-quoted words (newlines as "$mvm_nl"): either
 * `[cd …;] [export …;] exec ARGV…` or `MVM_NONCE=…; mvm_agent OP ARGS…`.
 * At end of stdin (the SDK went away) it exits without running anything.
 */
export const RUNNER_SH: string = `mvm_nl='
'
mvm_agent() {
${AGENT_SH}
}
IFS= read -r mvm_job || exit 0
eval "$mvm_job"
exit
`;

/** Quotes one word for the runner's job line (which must stay one line). @example `shellWord("it's") // "'it'\\''s'"` */
export function shellWord(s: string): string {
  return s.split("\n").map((part) => `'${part.replaceAll("'", `'\\''`)}'`).join('"$mvm_nl"');
}
