# The file agent: a shell function the runner calls for one file operation, inside the sandbox's
# namespaces and root with the guest's credentials, so a path can only reach the sandbox's own view.
# Every tool is the SDK's own execute-only copy under /.mvm (read-only, never the guest's PATH), so
# no process of an operation can be traced or replaced by guest code.
# Failures: "mvm-error CODE message" on stderr, exit 3; CODE "?" means a tool failed, and the SDK
# classifies its errno text (the part after the last ": ", never a guest-chosen name).
# Ops: read PATH OFFSET LENGTH | write PATH MODE PARENTS | list PATH | stat PATH |
#      commit PATH NONCE | mkdir PATH MODE PARENTS | remove PATH RECURSIVE | rename FROM TO | tarin DIR |
#      tarout DIR | cleanup DIR NONCE | cwdcheck PATH | chmod PATH MODE | copy FROM TO RECURSIVE OVERWRITE |
#      symlink TARGET PATH | realpath PATH | readlink PATH
mvm_agent() {
  T=/.mvm
  LC_ALL=C
  export LC_ALL
  op=$1; shift
  case "$op" in
    read)
      p=$1
      if [ -d "$p" ]; then mvm_fail IS_A_DIRECTORY "is a directory"; fi
      if [ ! -e "$p" ]; then mvm_missing "$p"; fi
      if [ ! -f "$p" ]; then mvm_fail INVALID_INPUT "is not a regular file (fifo, socket or device)"; fi
      [ -r "$p" ] || mvm_fail PERMISSION_DENIED "Permission denied"
      if [ "$3" = "-" ]; then exec "$T/dd" if="$p" bs=65536 iflag=skip_bytes,nonblock skip="$2" status=none
      else exec "$T/dd" if="$p" bs=65536 iflag=skip_bytes,count_bytes,nonblock skip="$2" count="$3" status=none; fi;;
    write)
      # phase one of a write: the data goes to a fresh temporary file beside the target, whose info is
      # printed; the SDK commits it (commit) only when its size is what the SDK sent, else removes it
      p=$1; dir=${p%/*}; [ -n "$dir" ] || dir=/
      if [ -d "$p" ] && [ ! -L "$p" ]; then mvm_fail IS_A_DIRECTORY "is a directory"; fi
      if [ -e "$dir" ] && [ ! -d "$dir" ]; then mvm_fail NOT_A_DIRECTORY "its parent is not a directory"; fi
      if [ "$3" = 1 ] && [ ! -d "$dir" ]; then mvm_run "$T/mkdir" -p -- "$dir"; fi
      [ -e "$dir" ] || mvm_missing "$dir"
      [ -d "$dir" ] || mvm_fail NOT_A_DIRECTORY "its parent is not a directory"
      case "${MVM_NONCE:-}" in *[!0-9a-f]*|"") mvm_fail INVALID_INPUT "bad nonce";; esac
      tmp="$dir/.mvm-write.$MVM_NONCE"
      trap 'rm_tmp' EXIT
      trap 'rm_tmp; exit 143' TERM INT PIPE
      # a fresh name, created exclusively (noclobber), with the mode's permission bits from the start
      # when a umask can give them (no chmod then), else private until chmod
      if [ $(( 0$2 & ~0666 )) -eq 0 ] && [ $(( 0$2 & 0200 )) -ne 0 ]; then umask "$(printf %03o $(( 0666 & ~0$2 )))"; needmod=0; else umask 077; needmod=1; fi
      out=$( (set -C; : > "$tmp") 2>&1) || mvm_fail "?" "$out"
      exec 6>>"$tmp" || mvm_fail INTERNAL "cannot open the temporary file"
      out=$("$T/cat" 2>&1 >&6) || mvm_fail "?" "$out"
      exec 6>&-
      [ $needmod = 0 ] || mvm_run "$T/chmod" "$2" -- "$tmp"
      trap - EXIT TERM INT PIPE
      mvm_info "$tmp";;
    commit)
      # phase two: the temporary file of nonce $2 becomes $1 (rename: readers see the old or the new file)
      case "$2" in *[!0-9a-f]*|"") mvm_fail INVALID_INPUT "bad nonce";; esac
      p=$1; dir=${p%/*}; [ -n "$dir" ] || dir=/
      mvm_run "$T/mv" -f -T -- "$dir/.mvm-write.$2" "$p"
      mvm_info "$p";;
    list)
      p=$1
      [ -e "$p" ] || mvm_missing "$p"
      [ -d "$p" ] || mvm_fail NOT_A_DIRECTORY "Not a directory"
      [ -r "$p" ] && [ -x "$p" ] || mvm_fail PERMISSION_DENIED "Permission denied"
      exec "$T/find" -H "$p" -mindepth 1 -maxdepth 1 -printf '%y\t%s\t%m\t%T@\t%p\0';;
    stat)
      [ -e "$1" ] || [ -L "$1" ] || mvm_missing "$1"
      mvm_info "$1";;
    mkdir)
      # parents (like mkdir -p): missing parents are made and a directory already there is no error;
      # either way, something else already at the path is
      if [ -e "$1" ] && [ ! -d "$1" ]; then mvm_fail CONFLICT "exists and is not a directory"; fi
      if [ "$3" = 1 ]; then mvm_run "$T/mkdir" -p -m "$2" -- "$1"; [ -d "$1" ] || mvm_fail NOT_A_DIRECTORY "Not a directory"
      else mvm_run "$T/mkdir" -m "$2" -- "$1"; fi
      mvm_info "$1";;
    remove)
      [ -e "$1" ] || [ -L "$1" ] || mvm_missing "$1"
      if [ -d "$1" ] && [ ! -L "$1" ]; then
        if [ "$2" = 1 ]; then mvm_run "$T/rm" -rf --one-file-system -- "$1"; else mvm_run "$T/rmdir" -- "$1"; fi
      else mvm_run "$T/rm" -f -- "$1"; fi;;
    rename)
      [ -e "$1" ] || [ -L "$1" ] || mvm_missing "$1"
      mvm_run "$T/mv" -f -T -- "$1" "$2"
      mvm_info "$2";;
    tarin)
      if [ ! -d "$1" ]; then [ -e "$1" ] && mvm_fail NOT_A_DIRECTORY "Not a directory"; mvm_run "$T/mkdir" -p -- "$1"; fi
      out=$("$T/tar" -x -f - -C "$1" --no-same-owner --no-overwrite-dir 2>&1) || mvm_fail "?" "$out";;
    tarout)
      [ -e "$1" ] || mvm_missing "$1"
      [ -d "$1" ] || mvm_fail NOT_A_DIRECTORY "Not a directory"
      exec "$T/tar" -c -f - -C "$1" .;;
    cleanup)
      # the temporary file of a write that failed or was not committed: .mvm-write.<nonce> in its directory
      case "$2" in *[!0-9a-f]*|"") mvm_fail INVALID_INPUT "bad nonce";; esac
      "$T/rm" -f -- "$1/.mvm-write.$2"; exit 0;;
    chmod)
      [ -e "$1" ] || mvm_missing "$1"
      mvm_run "$T/chmod" "$2" -- "$1"
      mvm_info "$1";;
    copy)
      # a copy never follows a symlink inside what it copies (-P), keeps modes and times, and never
      # goes into an existing folder at the destination (-T: the destination is the copy's own name)
      [ -e "$1" ] || [ -L "$1" ] || mvm_missing "$1"
      if [ -d "$1" ] && [ ! -L "$1" ] && [ "$3" != 1 ]; then mvm_fail IS_A_DIRECTORY "is a directory (copy it with { recursive: true })"; fi
      if [ -e "$2" ] || [ -L "$2" ]; then
        [ "$4" = 1 ] || mvm_fail CONFLICT "the destination exists (pass { overwrite: true } to replace it)"
        if [ -d "$2" ] && [ ! -L "$2" ]; then mvm_fail IS_A_DIRECTORY "the destination is a directory"; fi
      fi
      case "$2/" in "$1"/*) mvm_fail INVALID_INPUT "cannot copy a folder into itself";; esac
      # a symlink replaced is replaced, never written through
      if [ -L "$2" ]; then mvm_run "$T/rm" -f -- "$2"; fi
      mvm_run "$T/cp" -P -R -T --preserve=mode,timestamps -- "$1" "$2"
      mvm_info "$2";;
    symlink)
      if [ -e "$2" ] || [ -L "$2" ]; then mvm_fail CONFLICT "the path exists"; fi
      mvm_run "$T/ln" -s -T -- "$1" "$2"
      mvm_info "$2";;
    realpath)
      [ -e "$1" ] || { [ -L "$1" ] && mvm_fail NOT_FOUND "a symlink whose target does not exist"; mvm_missing "$1"; }
      exec "$T/readlink" -z -e -- "$1";;
    readlink)
      [ -L "$1" ] || { [ -e "$1" ] && mvm_fail INVALID_INPUT "is not a symlink"; mvm_missing "$1"; }
      exec "$T/readlink" -z -- "$1";;
    cwdcheck)
      [ -d "$1" ] || { [ -e "$1" ] && mvm_fail NOT_A_DIRECTORY "Not a directory"; mvm_missing "$1"; };;
    *) mvm_fail INTERNAL "unknown op";;
  esac
  exit 0
}
mvm_fail() { printf 'mvm-error %s %s\n' "$1" "$2" >&2; exit 3; }
# a tool's own failure: its last line's errno text is classified by the SDK
mvm_run() { out=$("$@" 2>&1) || mvm_fail "?" "$out"; }
# shellcheck disable=SC2317 # (run by the write's traps)
rm_tmp() { "$T/rm" -f -- "$tmp"; }
# which component of a missing path is the problem: a non-directory parent, or nothing there
mvm_missing() {
  q=$1
  while [ "$q" != / ] && [ -n "$q" ]; do
    q=${q%/*}; [ -n "$q" ] || q=/
    if [ -e "$q" ] && [ ! -d "$q" ]; then mvm_fail NOT_A_DIRECTORY "a parent is not a directory"; fi
  done
  mvm_fail NOT_FOUND "No such file or directory"
}
mvm_info() { "$T/find" "$1" -maxdepth 0 -printf '%y\t%s\t%m\t%T@\t%p\0' 2>/dev/null; }
# A runner's job process (runner.pl) runs an operation as `sh -c AGENT mvm-agent OP ARGS...`, its
# nonce in MVM_NONCE, the job's stdin, stdout and stderr on 0, 1 and 2
mvm_agent "$@"
