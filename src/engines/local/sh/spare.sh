# A runner's next job process (POSIX sh, agent.sh is prepended when the module is generated): forked
# by runner.pl ahead of need and exec'd at once from the SDK's execute-only sh, so a job's start pays
# neither a fork nor a shell's start-up, and touches no page shared with the runner (its parent and
# subreaper). Descriptors: 0 the runner's frame pipe, 1 its report pipe, 2 the slot's stderr fifo,
# 3 a pipe that tells the runner the frame was taken (closed then), 4 the slot's stdin fifo (read
# end), 5 its stdout fifo. It waits for one frame: a line with the job's line count, then that many
# lines of shell built by the SDK from single-quoted words (every byte of an argument or value but
# NUL arrives as it was sent); says J, and runs the job, which moves 4 and 5 onto 0 and 1 before the
# guest's program (or the file agent) runs, so neither pipe of the runner reaches it. At the end of
# the frame pipe (the SDK went away) it exits without running anything.
IFS= read -r mvm_n || exit 0
case "$mvm_n" in ''|*[!0-9]*) exit 125;; esac
mvm_job=""
while [ "$mvm_n" -gt 0 ]; do
  IFS= read -r mvm_l || exit 125
  mvm_job="$mvm_job$mvm_l
"
  mvm_n=$((mvm_n - 1))
done
unset mvm_n mvm_l
printf J
printf t >&3
exec 3>&-
eval "$mvm_job"
exit
