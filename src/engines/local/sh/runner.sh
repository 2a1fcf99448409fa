# The runner (POSIX sh, agent.sh is prepended when the module is generated): a shell inside the
# sandbox (in its namespaces and root, capabilities dropped), started from the SDK's execute-only
# copy of sh, so guest code can neither trace it nor read its memory, descriptors or environment.
# It first proves it is in the sandbox it was sent to (the hostname is the sandbox's id), then waits
# for its job after saying R on stdout: a line with the job's line count, then that many lines of shell built by the SDK from
# single-quoted words, so every byte of an argument or value except NUL arrives as it was sent. The
# rest of stdin belongs to the job. At end of stdin (the SDK went away) it exits without running anything.
# Arg: the sandbox's id.
read -r mvm_host < /proc/sys/kernel/hostname || exit 125
[ "$mvm_host" = "$1" ] || { echo "mvm-runner: not in sandbox $1" >&2; exit 125; }
# the handshake: one byte that tells the SDK this runner is in place (nothing else can write here)
printf R
IFS= read -r mvm_n || exit 0
case "$mvm_n" in ''|*[!0-9]*) exit 125;; esac
mvm_job=""
while [ "$mvm_n" -gt 0 ]; do
  IFS= read -r mvm_l || exit 125
  mvm_job="$mvm_job$mvm_l
"
  mvm_n=$((mvm_n - 1))
done
unset mvm_host mvm_n mvm_l
# the acknowledgement: the job arrived and runs now (a runner guest code stopped says nothing)
printf J
eval "$mvm_job"
exit
