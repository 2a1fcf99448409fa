# Host-side snapshot helper of the local engine (run by the engine's uid, root when it has cgroups).
# Usage: sh -c SNAPSHOT_SH mvm-snap OP ARGS...
#   capture SRC DST [INIT_PID]  copies a frozen (or stopped) sandbox's root SRC into DST, which must not
#                               exist yet: symlinks are copied as symlinks, nothing is followed or
#                               dereferenced (cp -d opens with O_NOFOLLOW). With INIT_PID (a sandbox
#                               restored on an overlay), the copy runs in the private mount namespace of
#                               the sandbox's bwrap (the parent of its init), where that overlay is mounted.
#   restore SRC DST UID         copies a snapshot's tree into a new sandbox's root DST and gives every
#                               entry to UID without following a link (chown -h, physical walk).
set -u
umask 077
op=$1; shift
CP="cp -dR --preserve=mode,ownership,timestamps,links --no-dereference"
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
  *) echo "error unknown op $op"; exit 2;;
esac
