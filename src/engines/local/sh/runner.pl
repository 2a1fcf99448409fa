# The runner: a small Perl program inside the sandbox (in its namespaces and root, capabilities
# dropped, no_new_privs), started from the SDK's execute-only copy of perl, so guest code can neither
# trace it nor read its memory, descriptors or environment. It serves up to SLOTS jobs one after the
# other, each in a process of its own that it starts ahead of need (sh/spare.sh: a fork exec'd at
# once into the SDK's execute-only sh, which waits for the job's frame): a command then costs a frame
# and an exec, and no process spawned on the host (forks and page faults are dear on some hosts).
#
# Channels, none of which guest code can open: stdin (frames from the SDK) and stdout (reports to the
# SDK) are pipes to the host-side entry; each job's stdin, stdout and stderr are fifos the host-side
# entry (enter.pl) made in a host-only folder (never visible in the sandbox), which this runner holds
# as descriptor 3 and opens them through (slot i: i.in, i.out, i.err), one slot ahead. A job's
# process gets its own three and nothing else of the runner's.
#
# It first proves it is in the sandbox it was sent to (the hostname is the sandbox's id), becomes the
# subreaper of what its jobs leave behind, and says R. Frames and the reports J, C, N and X are read
# and written by the job's process (see spare.sh and job.ts); when that process ends, the runner says
# "E<wait status> <c|d>\n": c when nothing it started is left (this subreaper has no child but the
# next job's process), d when something is (the runner then exits and the SDK reaps its group). At
# the end of stdin, or after its last slot, it exits.
#
# Guest code runs as the same uid and may signal it: every signal it can ignore is ignored (a
# kill(SIGTERM) of a job reaches its whole group, this runner included); SIGSTOP shows as a missing
# acknowledgement, SIGKILL as its death, which the SDK sees.
# Argv: ID PRCTL_SYSCALL_NUMBER SLOTS SPARE_SCRIPT (no module is loaded: nothing is
# read from the sandbox's files but /proc/sys/kernel/hostname and this process's
# /proc/self/task/N/children)
my ($id, $prctl, $slots, $spare) = @ARGV;
open(my $h, "<", "/proc/sys/kernel/hostname") or exit 125;
my $host = <$h>;
close($h);
chomp $host;
if ($host ne $id) { print STDERR "mvm-runner: not in sandbox $id\n"; exit 125 }
# PR_SET_CHILD_SUBREAPER (36): whatever a job leaves behind stays this runner's descendant
syscall($prctl + 0, 36, 1, 0, 0, 0) == 0 or do { print STDERR "mvm-runner: cannot become a subreaper: $!\n"; exit 125 };
my @sigs = grep { !/^(KILL|STOP|CHLD|CLD|ZERO|NUM\d+|RTMIN|RTMAX|__WARN__|__DIE__)$/ } keys %SIG;
local $SIG{__WARN__} = sub { };
$SIG{$_} = "IGNORE" for @sigs;
# the reports go to a close-on-exec copy of stdout; frames come from one of stdin
open(my $rep, ">&", \*STDOUT) or exit 125;
open(my $in, "<&", \*STDIN) or exit 125;
open(STDIN, "<", "/dev/null") or exit 125;
open(STDOUT, ">", "/dev/null") or exit 125;
# the slots' folder (descriptor 3, from the host-side entry): no child of this process gets it
open(my $slotdir, "<&=", 3) or do { print STDERR "mvm-runner: no slots folder: $!\n"; exit 125 };
fcntl($slotdir, 2, 1);    # F_SETFD FD_CLOEXEC
my @fh;
# opens slot I's fifos: the stdin's read end (O_NONBLOCK, as no writer is there yet; then blocking),
# the stdout's and stderr's write ends (a read-write end first, as a write end needs a reader to open)
sub slot {
  my $i = $_[0];
  my $p = "/proc/self/fd/3/$i";
  sysopen(my $r, "$p.in", 04000) or do { print STDERR "mvm-runner: slot $i: $!\n"; exit 125 };
  fcntl($r, 4, 0);    # F_SETFL: blocking
  fcntl($r, 1031, 1 << 20);    # F_SETPIPE_SZ: a file write moves in 1 MiB steps (where the host allows it)
  my @w;
  for my $k ("out", "err") {
    sysopen(my $rw, "$p.$k", 2) or do { print STDERR "mvm-runner: slot $i: $!\n"; exit 125 };
    sysopen(my $x, "$p.$k", 1) or do { print STDERR "mvm-runner: slot $i: $!\n"; exit 125 };
    close($rw);
    push @w, $x;
  }
  $fh[$i] = [$r, @w];
}
sub say_ { syswrite($rep, $_[0]) == length($_[0]) or exit 0 }
# a fresh process that waits for slot SLOT's frame and runs it (sh/spare.sh: forked here and exec'd
# at once, so a job's start touches no page shared with this process); returns [pid, pipe that says
# it took its frame]
sub ready {
  my $slot = $_[0];
  slot($slot);
  pipe(my $pr, my $pw) or exit 125;
  my $pid = fork();
  exit 125 unless defined $pid;
  if ($pid) {
    close($pw);
    return [$pid, $pr];
  }
  close($pr);
  # 0 frames, 1 reports, 2 the slot's stderr, 3 took, 4 the slot's stdin, 5 its stdout; nothing else
  # (moved above every slot first: F_DUPFD, close-on-exec)
  my @tmp;
  for ([">&=", $pw], ["<&=", $fh[$slot][0]], [">&=", $fh[$slot][1]]) {
    my $fd = fcntl($_->[1], 0, 3 * $slots + 16) or exit 125;
    open(my $t, $_->[0], $fd + 0) or exit 125;
    fcntl($t, 2, 1);
    push @tmp, $t;
  }
  open(STDIN, "<&", $in) or exit 125;
  open(STDOUT, ">&", $rep) or exit 125;
  open(STDERR, ">&", $fh[$slot][2]) or exit 125;
  close($_) for $in, $rep, $pw, $slotdir, @{ $fh[$slot] };
  $SIG{$_} = "DEFAULT" for @sigs;    # (a shell cannot undo a signal ignored when it started)
  $^F = 5;
  my @low;
  for my $k (0 .. 2) { open(my $t, $k == 1 ? "<&" : ">&", $tmp[$k]) or exit 125; push @low, $t; fileno($t) == 3 + $k or exit 125 }
  exec { "/.mvm/sh" } "sh", "-c", $spare;
  exit 125;
}
# this process's children: the next fork, and anything a job left behind (this is its subreaper)
sub children {
  open(my $c, "<", "/proc/self/task/$$/children") or return (0);
  my $l = <$c> // "";
  close($c);
  return (1, split(" ", $l));
}
# R once slot 0's fifos are open here: the SDK's opens of its ends then never wait for this side (it
# opens them without blocking, so a runner that died would give it an end-of-file, never a hang)
my $next = ready(0);
say_("R");
for my $slot (0 .. $slots - 1) {
  my ($pid, $pr) = @$next;
  # the fork took its frame (t), or ended without one (the SDK went away, or guest code killed it)
  my $took = sysread($pr, my $t, 1);
  close($pr);
  unless ($took) { waitpid($pid, 0); exit 0 }
  close($_) for @{ $fh[$slot] };
  $next = $slot + 1 < $slots ? ready($slot + 1) : undef;
  my ($st, $left) = (0, "c");
  for (;;) {
    my $w = waitpid(-1, 0);
    if ($w == $pid) { $st = $?; last }
    if ($w == -1) { $left = "d"; last }
    if ($next && $w == $next->[0]) { $next = undef; $left = "d" }
  }
  for (;;) {
    my $w = waitpid(-1, 1);    # WNOHANG: what the job left behind and has ended
    last if $w <= 0;
    if ($next && $w == $next->[0]) { $next = undef; $left = "d" }
  }
  my ($ok, @kids) = children();
  $left = "d" unless $ok;
  for (@kids) { $left = "d" unless $next && $_ == $next->[0] }
  say_("E$st $left\n");
  if ($left eq "d") { kill(9, $next->[0]) if $next; exit 0 }
}
exit 0;
