# Host-side snapshot helper of the local engine (run by the engine's uid, root when it has cgroups).
# Usage: sh -c SNAPSHOT_SH mvm-snap OP ARGS...
#   capture SRC DST [INIT_PID]  copies a frozen (or stopped) sandbox's root SRC into DST, which must not
#                               exist yet: symlinks are copied as symlinks, nothing is followed or
#                               dereferenced (cp -d opens with O_NOFOLLOW). With INIT_PID (a sandbox
#                               restored on an overlay), the copy runs in the private mount namespace of
#                               the sandbox's bwrap (the parent of its init), where that overlay is mounted.
#   restore SRC DST UID         copies a snapshot's tree into a new sandbox's root DST and gives every
#                               entry to UID without following a link (chown -h, physical walk).
#   clone SRC DST GROUP MARK    a fork: freezes the sandbox's cgroup GROUP (- when it is paused or
#                               stopped already; exit 3 when it does not freeze: nothing is read), clones
#                               its root SRC into DST (no guest process uses it) by reflink only
#                               (cp --reflink=always: a copy-on-write filesystem shares the blocks, no
#                               byte is copied; anything else fails; nothing is followed, as for
#                               capture), then thaws GROUP unless MARK (the sandbox's paused marker)
#                               appeared meanwhile, also when the clone failed. The engine then makes the
#                               clone the fork's own (snapshot.ts, adoptTree): one process fewer.
#   cow DIR                     exits 0 when DIR's filesystem clones files by reflink (a probe file).
# Every copy also asks for a reflink where the filesystem has them (--reflink=auto: XFS, btrfs share
# blocks; elsewhere bytes are copied).
set -u
umask 077
op=$1; shift
CP="cp -dR --preserve=mode,ownership,timestamps,links --no-dereference --reflink=auto"
CLONE="cp -dR --preserve=mode,ownership,timestamps,links --no-dereference --reflink=always"
case "$op" in
  capture)
    src=$1; dst=$2; init=${3:-}
    if [ -z "$init" ]; then
      # shellcheck disable=SC2086
      exec $CP -- "$src/." "$dst"
    fi
    mon=$(sed -n 's/^PPid:[[:space:]]*//p' "/proc/$init/status" 2>/dev/null)
    case "$mon" in ''|*[!0-9]*|0|1) echo "error the sandbox's launcher is gone"; exit 1;; esac
    # shellcheck disable=SC2086
    exec nsenter "--mount=/proc/$mon/ns/mnt" -- $CP -- "$src/." "$dst";;
  restore)
    src=$1; dst=$2; uid=$3
    # shellcheck disable=SC2086
    $CP -- "$src/." "$dst" || exit 1
    [ "$uid" = "$(id -u)" ] || chown -R -h -P -- "$uid:$uid" "$dst";;
  clone)
    src=$1; dst=$2; group=$3; mark=$4
    if [ "$group" != - ]; then
      cg_freeze "$group" 1 || { cg_freeze "$group" 0; echo "error the sandbox did not freeze"; exit 3; }
    fi
    # shellcheck disable=SC2086
    $CLONE -- "$src/." "$dst"; rc=$?
    # a pause() meanwhile keeps it frozen
    if [ "$group" != - ] && [ ! -e "$mark" ]; then cg_freeze "$group" 0 || echo "error the sandbox did not thaw"; fi
    exit $rc;;
  cow)
    dir=$1; p="$dir/.cow-probe.$$"
    trap 'rm -f -- "$p" "$p.c"' EXIT
    printf 'mvm' > "$p" && cp --reflink=always -- "$p" "$p.c" 2>/dev/null;;
  *) echo "error unknown op $op"; exit 2;;
esac
