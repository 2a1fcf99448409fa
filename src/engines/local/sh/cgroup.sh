# Host-side cgroup helper of the local engine. Usage: sh -c CGROUP_SH mvm-cg OP ARGS...
# (cgroup-fns.sh is prepended when the module is generated.)
op=$1; shift
# shellcheck disable=SC2154 # procs, st, pp and sid are set by cg_procs and proc_of (cgroup-fns.sh)
case "$op" in
  detect)
    v2=; mem=; cpu=; pids=; frz=
    while read -r _ mnt typ opts _; do
      case "$typ" in
        cgroup2) [ -z "$v2" ] && v2=$mnt;;
        cgroup)
          case ",$opts," in *,memory,*) mem=$mnt;; esac
          case ",$opts," in *,cpu,*) cpu=$mnt;; esac
          case ",$opts," in *,pids,*) pids=$mnt;; esac
          case ",$opts," in *,freezer,*) frz=$mnt;; esac;;
      esac
    done < /proc/self/mounts
    [ -n "$v2" ] || { echo none; exit 0; }
    kind=hybrid
    read -r ctl < "$v2/cgroup.controllers" 2>/dev/null
    case " $ctl " in *" memory "*) kind=v2;; esac
    mkdir -p "$v2/mvm" 2>/dev/null && [ -w "$v2/mvm/cgroup.procs" ] || { echo none; exit 0; }
    if [ "$kind" = v2 ]; then
      echo "+memory +pids +cpu" > "$v2/cgroup.subtree_control" 2>/dev/null
      echo "+memory +pids +cpu" > "$v2/mvm/cgroup.subtree_control" 2>/dev/null
      mem=; cpu=; pids=
    fi
    # the freezers: the v1 controller's mount (or -), and whether v2 groups have cgroup.freeze
    v2fz=0; [ -e "$v2/mvm/cgroup.freeze" ] && v2fz=1
    echo "$kind $v2 ${mem:--} ${cpu:--} ${pids:--} ${frz:--} $v2fz";;
  signal) cg_signal "$1" "$2" "${3:-}";;
  session)
    # no cgroups: signal the session of the process whose parent is $1 (nsenter's child, a session leader)
    parent=$1; sig=$2
    for s in /proc/[0-9]*/status; do
      p=${s#/proc/}; p=${p%/status}
      proc_of "$p" && [ "$pp" = "$parent" ] || continue
      kill -s "$sig" -- "-$p" 2>/dev/null || kill -s "$sig" "$p" 2>/dev/null
    done;;
  stopped)
    # prints a pid in a stop (T: SIGSTOP or a job-control stop; t: traced) of group $1, or with $1 "-" (no
    # cgroups) of the session led by the child of $2; nothing when none is. A runner's group holds only the
    # SDK's processes of its one job: one in a stop was stopped by guest code.
    if [ "$1" != - ]; then
      cg_procs "$1"
      for p in $procs; do
        proc_of "$p" || continue
        case "$st" in T | t) echo "$p"; break;; esac
      done
    else
      parent=$2; lead=""
      for s in /proc/[0-9]*/status; do
        p=${s#/proc/}; p=${p%/status}
        proc_of "$p" && [ "$pp" = "$parent" ] && { lead=$p; break; }
      done
      [ -n "$lead" ] || exit 0
      for s in /proc/[0-9]*/status; do
        p=${s#/proc/}; p=${p%/status}
        proc_of "$p" && [ "$sid" = "$lead" ] || continue
        case "$st" in T | t) echo "$p"; break;; esac
      done
    fi;;
  freeze|thaw)
    # prints ok, nofreeze (no cgroup.freeze: cgroup v2's freezer is missing) or failed
    v=1; [ "$op" = thaw ] && v=0
    cg_freeze "$1" "$v"; rc=$?
    case $rc in 0) echo ok;; 2) echo nofreeze;; *) echo failed;; esac;;
  limits) cg_limits;;
  make) mkdir "$@" 2>/dev/null; for c in "$@"; do [ -d "$c" ] && echo "$c"; done;;
  reap)
    mem=$1; shift
    for c in "$@"; do cg_signal "$c" KILL; done
    for c in "$@"; do
      i=0; while ! cg_empty "$c" && [ $i -lt 200 ]; do i=$((i+1)); sleep 0.005; done
    done
    rmdir "$@" 2>/dev/null
    echo "oom $(cg_oom "$mem")";;
  remove)
    for c in "$@"; do cg_sweep "$c"; done;;
  gc)
    # groups of this state root's sandboxes (mvm/<root tag>/sbx-*) whose state folder is gone
    state=$1; tag=$2; shift 2
    for r in "$@"; do
      for c in "$r/mvm/$tag"/sbx-*; do
        [ -d "$c" ] && [ ! -d "$state/${c##*/}" ] && cg_sweep "$c"
      done
    done;;
  killpid)
    # kill PID with SIG only while it is still the process that started at START
    [ -n "$1" ] && [ "$(pid_start "$1")" = "$2" ] && kill -s "$3" "$1" 2>/dev/null
    # with a 4th argument "wait": wait (up to 1 s) for it to be gone
    if [ "${4:-}" = wait ]; then
      i=0; while [ "$(pid_start "$1")" = "$2" ] && [ $i -lt 100 ]; do i=$((i+1)); sleep 0.01; done
    fi
    exit 0;;
  effective)
    # the limits from each group up to its hierarchy's root ("mem BYTES", "pids N", "cpu QUOTA PERIOD"
    # per level that sets one), then the host's memory ("memtotal KB") and "pidmax N": the JS side
    # takes the tightest
    for d in "$@"; do
      while [ -n "$d" ] && [ -d "$d" ]; do
        v=; read -r v < "$d/memory.max" 2>/dev/null; [ -n "$v" ] && [ "$v" != max ] && echo "mem $v"
        v=; read -r v < "$d/memory.limit_in_bytes" 2>/dev/null; [ -n "$v" ] && echo "mem $v"
        v=; read -r v < "$d/pids.max" 2>/dev/null; [ -n "$v" ] && [ "$v" != max ] && echo "pids $v"
        v=; read -r v < "$d/cpu.max" 2>/dev/null; case "$v" in max*|"") ;; *) echo "cpu $v";; esac
        v=; read -r v < "$d/cpu.cfs_quota_us" 2>/dev/null; case "$v" in -*|"") ;; *) read -r p < "$d/cpu.cfs_period_us" && echo "cpu $v $p";; esac
        d=${d%/*}
      done
    done
    while read -r k v _; do [ "$k" = MemTotal: ] && echo "memtotal $v"; done < /proc/meminfo
    # (a sysctl file read a byte at a time, as the shell's read does, stops after its first byte)
    v=$(cat /proc/sys/kernel/pid_max 2>/dev/null); [ -n "$v" ] && echo "pidmax $v"
    exit 0;;
  alive)
    # prints each PID:START pair that is still that same live process
    for ps in "$@"; do [ "$(pid_start "${ps%%:*}")" = "${ps#*:}" ] && echo "$ps"; done; exit 0;;
esac
