# The launcher's first step for a sandbox restored from a snapshot on an overlay (as root, already in
# a private mount namespace made by `unshare --mount --propagation private`, so the mount is seen by
# no other process and goes away with the sandbox's last process): mounts LOWER (the snapshot's
# read-only tree) under UPPER/WORK (the sandbox's own folder) at MERGED, gives the merged tree to UID
# once (metacopy: a chown copies up metadata, never file data; MARK records it), then execs the rest.
# Usage: sh -c OVERLAY_SH mvm-overlay LOWER UPPER WORK MERGED UID MARK ARGV...
set -u
lower=$1; upper=$2; work=$3; merged=$4; uid=$5; mark=$6; shift 6
mount -t overlay mvm-overlay -o "lowerdir=$lower,upperdir=$upper,workdir=$work,metacopy=on" "$merged" || exit 125
if [ ! -e "$mark" ]; then
  chown -R -h -P -- "$uid:$uid" "$merged" || exit 125
  : > "$mark"
fi
exec "$@"
