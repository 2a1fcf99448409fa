# Host-side supervisor of one sandbox (POSIX sh; cgroup-fns.sh is prepended when the module is
# generated). It starts bubblewrap, reports the sandbox's processes, then holds the lease: it tears
# the sandbox down when the TTL runs out, when the owning process dies (unless detached), when the
# sandbox's init ends, or when asked (SIGTERM).
# It is started before the sandbox's folder is complete and waits for "go" on stdin: an owner that
# dies before that (end of input) leaves nothing, because this removes the folder. It runs in a session
# of its own, forked off the process its owner spawned (enter.pl with MVM_DETACH, which waits until
# this closes descriptor 4), so the owner's runtime never holds it: Deno kills the children it still
# holds when a test module's runtime ends, which killed supervisors half-way through a warm spare's
# start (a bwrap, its folder and groups were left). An owner that dies once "go" was said is seen by
# the watch as soon as the jail is up.
# Args: STATE_DIR OWNER_PID OWNER_START TTL_SECONDS BWRAP_ARGV... (bwrap's own arguments are in
# STATE_DIR/bwrap.args; OWNER_START is the owner's start time, field 22 of its /proc/PID/stat)
# Its transitions go to the sandbox's events.jsonl and, as one file each, to MVM_SPOOL (the audit chain's
# spool, outside the sandbox's folder: the SDK signs them into the chain, also after this folder is gone).
# Env: MVM_PERL and MVM_WATCH_PL (the watch, sh/watch.pl), MVM_CG_KIND, MVM_CG_V2, MVM_CG_MEM/CPU/PIDS (groups to make), MVM_LIM_MEM/CPU/PIDS (limits),
# MVM_CG_POOL (per-process groups to make under the v2 group, for the SDK), MVM_CG_FRZ (the v1 freezer group
# pause() uses, when v2 has no cgroup.freeze or MVM_FREEZER=v1: made and joined like the v1 controllers).
set -u
umask 077
d=$1; owner=$2; owner_start=$3; ttl=$4; shift 4
# "-": the owner could not read its own start time (Deno refuses /proc/PID/stat without --allow-all); the
# owner is alive while it waits for this line's "go" below, so its start time read here is its own
bw=""; wp=""; all=""; reaper=""; reaper_start=""
watch_pl=${MVM_WATCH_PL:-}; perl=${MVM_PERL:-perl}; spool=${MVM_SPOOL:-}; unset MVM_WATCH_PL MVM_PERL MVM_SPOOL
# this process, for the SDK to end it (by pid and start time) if the sandbox does not come up in time
# (a dead owner must not leave it dying of SIGPIPE, here or before it watches)
trap '' PIPE
echo "pid $$ $(pid_start $$)"
# ev TYPE [,FIELDS]: only the script's own words and numbers go in (nothing a guest wrote); the spool file is
# written with one write, and the SDK takes it only once its newline is there
ev() {
  t=$(date -u '+%s%N %Y-%m-%dT%H:%M:%S.%3NZ')
  e=$(printf '"id":"sup-%s-%s","time":"%s","type":"%s","source":"supervisor"%s}' "$$" "${t% *}" "${t#* }" "$1" "${2:-}")
  printf '{%s\n' "$e" >> "$d/events.jsonl" 2>/dev/null
  [ -z "$spool" ] || printf '{"sandbox":"%s",%s\n' "${d##*/}" "$e" > "$spool/sup-$$-${t% *}.ev" 2>/dev/null
}
# end_jail: ends every process of the sandbox (its files stay)
end_jail() {
  # a paused sandbox is thawed first: frozen processes (the host-side nsenters too) cannot reap or die
  [ -n "${MVM_CG_V2:-}" ] && cg_freeze "$MVM_CG_V2" 0
  [ -n "${MVM_CG_FRZ:-}" ] && cg_freeze "$MVM_CG_FRZ" 0
  # the sandbox's pid 1 first (the kernel then kills everything in its pid namespace, while the
  # host-side nsenters are still there to reap their children), then whatever is left in its groups
  # (cgroup.kill catches forks), then the launcher
  # only while it is still the process that started then (its pid may have been recycled)
  if [ -n "$reaper" ] && [ "$(pid_start "$reaper")" = "$reaper_start" ] && kill -KILL "$reaper" 2>/dev/null; then
    i=0; while alive "$reaper" && [ $i -lt 100 ]; do i=$((i+1)); sleep 0.01; done
  fi
  [ -n "${MVM_CG_V2:-}" ] && cg_signal "$MVM_CG_V2" KILL
  if [ -n "$bw" ]; then kill -KILL "$bw" 2>/dev/null; wait "$bw" 2>/dev/null; fi
  bw=""
}
cleanup() {
  trap '' TERM INT HUP
  : > "$d/destroying" 2>/dev/null
  ev destroyed ",\"reason\":\"$1\""
  [ -n "$wp" ] && kill "$wp" 2>/dev/null
  end_jail
  # sweep retries until each group is gone: a client may still be making a per-process group
  for c in $all; do cg_sweep "$c"; done
  # a guest may have left folders without write permission (rootless: they are ours); nothing of it follows links
  rm -rf "$d" 2>/dev/null || { chmod -R u+rwX "$d/root" 2>/dev/null; rm -rf "$d"; }
  exit 0
}
trap 'cleanup destroy' TERM INT HUP
go=""; read -r go || go=""
[ "$owner_start" = - ] && owner_start=$(pid_start "$owner")
# the process the owner spawned may go now
exec 4>&-
# the owner's start time tells it apart from a later process that got the same pid
if [ "$go" != go ] || [ -z "$owner_start" ] || [ "$(pid_start "$owner")" != "$owner_start" ]; then
  # the owner died or gave up while making the folder: nothing of the sandbox runs yet
  rm -rf "$d" 2>/dev/null
  exit 0
fi
exec </dev/null
all=""; join=""; memcg=-
if [ -n "${MVM_CG_V2:-}" ]; then
  if [ "$MVM_CG_KIND" = v2 ]; then
    memcg=$MVM_CG_V2
  else
    for c in "$MVM_CG_MEM" "$MVM_CG_CPU" "$MVM_CG_PIDS"; do [ -n "$c" ] && join="$join $c"; done
    [ -n "$MVM_CG_MEM" ] && memcg=$MVM_CG_MEM
  fi
  [ -n "${MVM_CG_FRZ:-}" ] && join="$join $MVM_CG_FRZ"
  all="$MVM_CG_V2$join"
  # one mkdir for the sandbox's groups and the first per-process groups the SDK will use
  pool=""; for q in ${MVM_CG_POOL:-}; do pool="$pool $MVM_CG_V2/$q"; done
  # the groups of this state root live under their own folder (mvm/<tag>), created on first use
  tagdir=${MVM_CG_V2%/*}
  if [ ! -d "$tagdir" ]; then
    mkdir -p "$tagdir" 2>/dev/null
    [ "$MVM_CG_KIND" = v2 ] && echo "+memory +pids +cpu" > "$tagdir/cgroup.subtree_control" 2>/dev/null
  fi
  # shellcheck disable=SC2086
  mkdir -p $all $pool 2>/dev/null || { echo "error cannot create the cgroups $all"; cleanup failed; }
  err=$(cg_limits) || { echo "$err"; cleanup failed; }
  { echo "$MVM_CG_V2"; echo "$memcg"; for c in $join; do echo "$c"; done; } > "$d/cgroups"
fi
mkfifo -m 600 "$d/alive" "$d/ctl" || { echo "error cannot create fifos in $d"; cleanup failed; }
# "alive" is held open for reading by this shell alone (the jail's launcher closes it), so the SDK tells
# a live supervisor from a dead one by opening it (the kernel drops a killed process's descriptors
# before its sandbox starts dying); "ctl" carries the SDK's wake-ups to the watch, and is held here too
# so none is lost before it starts
exec 7<>"$d/alive" 8<>"$d/ctl"
# jail ARGV: starts bubblewrap (the sandbox's init, no guest process yet) and waits until it is up;
# prints "error …" and fails when it does not come up. Run at create, and again after stop().
jail() {
  # "jail.alive" is held open for reading by the launcher alone, while the jail's bwrap (and so its
  # init) lives: the SDK asks it, as it asks "alive", instead of signalling a pid
  rm -f "$d/jail.alive" "$d/info.fifo" "$d/ready.fifo"
  mkfifo -m 600 "$d/info.fifo" "$d/ready.fifo" "$d/jail.alive" || { echo "error cannot create fifos in $d"; return 1; }
  exec 5<>"$d/ready.fifo"
  # bwrap reports its init's pid on fd 3; the sandbox's first command says "ready" on fd 4 once every
  # mount is in place; if bwrap ends first, the launcher says "exit N" on the same fifo.
  # The launcher dies with this supervisor (parent-death signal), and bwrap with the launcher, so a
  # killed supervisor takes its sandbox with it (the next create or list removes its folder).
  # Nothing of ours reaches the sandbox's environment (env -i), nor its pid 1's command line (bwrap
  # reads its arguments from bwrap.args on fd 6).
  MVM_SELF_CG="${MVM_CG_V2:-} $join" MVM_D="$d" MVM_INNER='for c in $MVM_SELF_CG; do echo $$ > "$c/cgroup.procs" || exit 125; done
    exec 3>"$MVM_D/info.fifo" 4>"$MVM_D/ready.fifo" 5>&- 9<&- 6<"$MVM_D/bwrap.args" </dev/null >/dev/null 2>"$MVM_D/bwrap.err"
    cd / && exec env -i PATH=/usr/bin:/bin "$@"' \
    setpriv --pdeathsig KILL -- sh -c 'sh -c "$MVM_INNER" sh "$@"; echo "exit $?" >&5' mvm-launcher "$@" </dev/null >/dev/null 2>&1 7<&- 8<&- 9<>"$d/jail.alive" &
  bw=$!
  info=""; while IFS= read -r line; do info="$info$line"; done < "$d/info.fifo"
  read -r ready <&5
  exec 5<&-
  rm -f "$d/info.fifo" "$d/ready.fifo"
  case "$info:$ready" in
    *'"child-pid"'*:ready) ;;
    *) wait "$bw" 2>/dev/null; bw=""; err=$(head -c 2000 "$d/bwrap.err" 2>/dev/null | tr '\n' ' '); echo "error $err"; return 1;;
  esac
  reaper=${info#*'"child-pid"'}; reaper=${reaper#*:}; reaper=${reaper%%,*}; reaper=$((reaper))
  # the sandbox's init is its pid 1 (bwrap --as-pid-1): the SDK enters the sandbox through it, because
  # it cannot be traced from inside (see bwrap.ts)
  init=$reaper
  reaper_start=$(pid_start "$reaper")
  { echo "init $init $(pid_start "$init")"; echo "reaper $reaper $(pid_start "$reaper")"; echo "supervisor $$ $(pid_start $$)"; } > "$d/pids.tmp" && mv "$d/pids.tmp" "$d/pids"
}
jail "$@" || cleanup failed
echo "ready $init $$"
exec </dev/null >/dev/null 2>&1
ev started ",\"initPid\":$init,\"ttlSeconds\":$ttl"
# blocks in the kernel until something ends the lease (sh/watch.pl); a signal to this shell (destroy)
# interrupts the wait. After stop() (exit 13) every process ends and a fresh jail with no guest process
# serves file operations until start(); the lease goes on with the time it had left.
left=$ttl
while :; do
  "$perl" -e "$watch_pl" "$d" "$owner" "$owner_start" "$bw" "$left" 7<&- & wp=$!
  wait "$wp"; rc=$?; wp=""
  [ $rc = 13 ] || break
  read -r left < "$d/ttl.left" 2>/dev/null || left=1
  end_jail
  # a fresh jail that fails to come up (a start racing the old jail's last processes on a loaded host) is
  # tried once more before the sandbox is given up
  jail "$@" >/dev/null || { end_jail; sleep 0.2; jail "$@" >/dev/null; } || cleanup failed
  : > "$d/stopped.done"
  ev jail.restarted ",\"initPid\":$init"
done
case $rc in
  10) reason="owner-exited";; 11) reason="ttl-expired";; 12) reason="init-exited";;
  0) exit 0;; *) reason=failed;;
esac
cleanup "$reason"
