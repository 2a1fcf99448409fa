# Cgroup functions shared by the host-side cgroup helper and the supervisor (POSIX sh).
# cg_signal DIR SIG [SPARE]: signal every process of a group (SIGKILL through cgroup.kill, forks
# included; other signals with the group frozen meanwhile). cg_sweep DIR: kill and remove a group and
# its per-process groups. cg_empty DIR, cg_oom MEMDIR.

# cg_procs DIR: sets procs to the group's pids, space-separated (read in this shell: no subshell, no fork)
cg_procs() { procs=""; while read -r p; do procs="$procs$p "; done < "$1/cgroup.procs" 2>/dev/null; }
cg_frozen() { while read -r k v; do [ "$k" = frozen ] && [ "$v" = 1 ] && return 0; done < "$1/cgroup.events" 2>/dev/null; return 1; }
# proc_of PID: sets st (its state letter), pp (its parent) and sid (its session, as the host sees it) from
# /proc/PID/status, whose Name line escapes what guest code can put in a process name (stat's comm field
# can hold ") " and newlines, which would shift the fields after it); fails when the process is gone
# shellcheck disable=SC2034 # st, pp and sid are read by its callers (cgroup.sh)
proc_of() {
  st=""; pp=""; sid=""
  while read -r k v _; do
    case "$k" in State:) st=$v;; PPid:) pp=$v;; NSsid:) sid=$v;; esac
  done < "/proc/$1/status" 2>/dev/null
  [ -n "$st" ]
}
cg_signal() {
  if [ "$2" = KILL ] && [ -e "$1/cgroup.kill" ]; then echo 1 > "$1/cgroup.kill" 2>/dev/null && return 0; fi
  fz=0
  if [ -e "$1/cgroup.freeze" ] && echo 1 > "$1/cgroup.freeze" 2>/dev/null; then
    # a freeze settles within a few reads of cgroup.events (builtins): a sleep (a process here) only after those
    fz=1; i=0; while ! cg_frozen "$1" && [ $i -lt 150 ]; do i=$((i+1)); [ $i -gt 50 ] && sleep 0.002; done
  fi
  # the spared process is signalled too when it is alone: the job has not forked yet, and its death
  # is then the job's
  cg_procs "$1"; spare=${3:-}; [ "$procs" = "$spare " ] && spare=""
  for p in $procs; do [ "$p" = "$spare" ] || kill -s "$2" "$p" 2>/dev/null; done
  [ $fz = 1 ] && echo 0 > "$1/cgroup.freeze" 2>/dev/null
  return 0
}
# cg_freeze DIR 1|0: freeze or thaw a group and everything under it (cgroup v2's cgroup.freeze, or a v1
# freezer group's freezer.state), and wait (up to 2 s) until the kernel says it is done; fails (2) when
# the group has no freezer, (1) when it does not settle
cg_freeze() {
  if [ -e "$1/freezer.state" ]; then
    want=FROZEN; [ "$2" = 0 ] && want=THAWED
    echo "$want" > "$1/freezer.state" 2>/dev/null || return 1
    i=0
    while [ $i -lt 1000 ]; do
      # reading the state is what moves a v1 group from FREEZING to FROZEN once every task stopped
      v=; read -r v < "$1/freezer.state" 2>/dev/null; [ "$v" = "$want" ] && return 0
      # a task forked while the group was freezing can slip through (it then runs on, FREEZING for good):
      # asking again freezes whatever is in the group now
      i=$((i+1)); [ $((i % 5)) = 0 ] && echo "$want" > "$1/freezer.state" 2>/dev/null
      # the first reads come back to back (a few tasks freeze within ~0.1 ms; a sleep is a spawn)
      [ $i -gt 20 ] && sleep 0.002
    done
    return 1
  fi
  [ -e "$1/cgroup.freeze" ] || return 2
  echo "$2" > "$1/cgroup.freeze" 2>/dev/null || return 1
  i=0
  while [ $i -lt 1000 ]; do
    if cg_frozen "$1"; then [ "$2" = 1 ] && return 0; else [ "$2" = 0 ] && return 0; fi
    # the first reads come back to back: a few tasks settle within ~0.1 ms, and a sleep is a spawn
    i=$((i+1)); [ $i -gt 20 ] && sleep 0.002
  done
  return 1
}
cg_empty() { read -r _ < "$1/cgroup.procs" 2>/dev/null && return 1; return 0; }
cg_oom() {
  [ -n "$1" ] && [ "$1" != - ] || { echo 0; return; }
  f="$1/memory.oom_control"; [ -e "$f" ] || f="$1/memory.events"
  while read -r k v; do [ "$k" = oom_kill ] && { echo "$v"; return; }; done < "$f" 2>/dev/null
  echo 0
}
cg_sweep() {
  # a v1 freezer group is thawed first: its frozen tasks would not die
  [ -e "$1/freezer.state" ] && echo THAWED > "$1/freezer.state" 2>/dev/null
  i=0
  while [ -d "$1" ] && [ $i -lt 100 ]; do
    for sub in "$1"/*/; do [ -d "$sub" ] && { cg_signal "$sub" KILL; rmdir "$sub" 2>/dev/null; }; done
    cg_signal "$1" KILL
    rmdir "$1" 2>/dev/null || { i=$((i+1)); sleep 0.02; }
  done
}
# pid_start PID: the process's start time (field 22 of /proc/PID/stat; $1 is field 3 after the command
# name), empty when it is gone or a zombie
pid_start() {
  read -r s < "/proc/$1/stat" 2>/dev/null || return 0
  s=${s##*) }
  # shellcheck disable=SC2086
  set -- $s
  case "$1" in Z|X) return 0;; esac
  shift 19; echo "$1"
}
# alive PID: the process exists and is not a zombie (no fork: called in loops)
alive() { read -r s < "/proc/$1/stat" 2>/dev/null || return 1; case "$s" in *") Z "*|*") X "*) return 1;; esac; return 0; }
# cg_limits: writes the limits in MVM_LIM_MEM/CPU/PIDS (empty: unchanged) to the sandbox's groups named
# in MVM_CG_KIND, MVM_CG_V2, MVM_CG_MEM/CPU/PIDS; says "error cannot write V to F" and fails otherwise
cg_w() { echo "$2" > "$1" 2>/dev/null || { echo "error cannot write $2 to $1"; return 1; }; }
cg_limits() {
  if [ "$MVM_CG_KIND" = v2 ]; then
    if [ -n "$MVM_LIM_MEM" ]; then
      cg_w "$MVM_CG_V2/memory.max" "$MVM_LIM_MEM" || return 1
      [ ! -e "$MVM_CG_V2/memory.swap.max" ] || cg_w "$MVM_CG_V2/memory.swap.max" 0 || return 1
    fi
    [ -z "$MVM_LIM_CPU" ] || cg_w "$MVM_CG_V2/cpu.max" "$MVM_LIM_CPU 100000" || return 1
    [ -z "$MVM_LIM_PIDS" ] || cg_w "$MVM_CG_V2/pids.max" "$MVM_LIM_PIDS" || return 1
  else
    if [ -n "$MVM_CG_MEM" ] && [ -n "$MVM_LIM_MEM" ]; then
      # the limit first: the kernel wants memsw >= limit, and both start unlimited
      cg_w "$MVM_CG_MEM/memory.limit_in_bytes" "$MVM_LIM_MEM" || return 1
      [ ! -e "$MVM_CG_MEM/memory.memsw.limit_in_bytes" ] || cg_w "$MVM_CG_MEM/memory.memsw.limit_in_bytes" "$MVM_LIM_MEM" || return 1
    fi
    if [ -n "$MVM_CG_CPU" ] && [ -n "$MVM_LIM_CPU" ]; then
      cg_w "$MVM_CG_CPU/cpu.cfs_period_us" 100000 || return 1
      cg_w "$MVM_CG_CPU/cpu.cfs_quota_us" "$MVM_LIM_CPU" || return 1
    fi
    [ -z "$MVM_CG_PIDS" ] || [ -z "$MVM_LIM_PIDS" ] || cg_w "$MVM_CG_PIDS/pids.max" "$MVM_LIM_PIDS" || return 1
  fi
  return 0
}
