# The runner: a small Perl program inside the sandbox (in its namespaces and root, capabilities
# dropped, no_new_privs), started from the SDK's execute-only copy of perl, so guest code can neither
# trace it nor read its memory, descriptors or environment. It serves up to SLOTS jobs one after the
# other, each in a process of its own that it forks ahead of need: a plain fork of this process
# (not dumpable either, as the dumpable flag goes with the memory it copies), which waits for the
# job's frame, reads it whole, says J, sets up the job's descriptors, cwd and environment itself and
# execs the program: a command then costs one read, one exec and the reports, and no shell and no
# process spawned on the host (forks and page faults are dear on some hosts).
#
# Channels, none of which guest code can open: stdin (frames from the SDK) and stdout (reports to the
# SDK) are pipes to the host-side entry; each job's stdin, stdout and stderr are fifos the host-side
# entry (enter.pl) made in a host-only folder (never visible in the sandbox), which this runner holds
# as descriptor 3 and opens them through (slot i: i.in, i.out, i.err), one slot ahead. A job's
# program gets its own three on 0, 1 and 2 and nothing else of the runner's (every other descriptor
# is close-on-exec).
#
# A frame (written by the SDK, see job.ts): its payload's length in decimal, a newline, then the
# payload, fields separated by NUL (no field holds one):
#   c STDIN CWD NENV NAME=VALUE... NARGV ARGV... NVIA VIA...   a command (VIA: exec that instead, once
#                                                              ARGV's program was found: the PTY helper)
#   a STDIN NONCE OP ARGS...                                   a file-agent operation (AGENT_SCRIPT)
# STDIN is 1 when the job reads its slot's stdin fifo, 0 for /dev/null. The job's process
# acknowledges its frame with J on the runner's report pipe; a command's process says in the same
# write, before anything of the guest runs, how its start went: C its cwd cannot be entered, N its
# program is not found on its PATH, X it execs now; so no output of the guest can pass for either.
#
# It first proves it is in the sandbox it was sent to (the hostname is the sandbox's id), becomes the
# subreaper of what its jobs leave behind, and says R. When a job's process ends, the runner says
# "E<wait status> <c|d>\n": c when nothing it started is left (this subreaper has no child then), d
# when something is (the runner then exits and the SDK reaps its group); then it forks the next job's
# process. At the end of stdin, or after its last slot, it exits.
#
# Guest code runs as the same uid and may signal it: every signal it can ignore is ignored (a
# kill(SIGTERM) of a job reaches its whole group, this runner included); SIGSTOP shows as a missing
# acknowledgement, SIGKILL as its death, which the SDK sees.
# Argv: ID PRCTL_SYSCALL_NUMBER SLOTS AGENT_SCRIPT (no module is loaded: nothing is read from the
# sandbox's files but /proc/sys/kernel/hostname and this process's /proc/self/task/N/children)
my ($id, $prctl, $slots, $agent) = @ARGV;
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
# A command's program as execvp would find it: a name with a slash as it is (if it is there), else
# the first executable regular file of that name along PATH (an empty entry is the cwd); or undef.
sub find {
  my ($prog, $path) = @_;
  if ($prog =~ m{/}) { return -e $prog ? $prog : undef }
  return undef if $prog eq "";
  for my $d (split(/:/, $path // "", -1)) {
    my $p = ($d eq "" ? "." : $d) . "/$prog";
    return $p if -f $p && -x _;
  }
  return undef;
}
# A command's frame (past "c STDIN") set up in this process: cwd, environment, program. Returns
# ("C") or ("N") when the start fails, else ("X", path, argv, via).
sub command {
  my @f = @_;
  my $cwd = shift @f;
  my @env = splice(@f, 0, shift @f);
  my @argv = splice(@f, 0, shift @f);
  my @via = splice(@f, 0, shift @f);
  @argv or exit 125;
  chdir($cwd) or return ("C");
  %ENV = ();
  for (@env) {
    my $i = index($_, "=");
    $ENV{ substr($_, 0, $i) } = substr($_, $i + 1) if $i > 0;
  }
  $ENV{PWD} = $cwd unless exists $ENV{PWD};
  my $path = find($argv[0], $ENV{PATH});
  return defined $path ? ("X", $path, \@argv, \@via) : ("N");
}
my $PATH = $ENV{PATH};
# The job's process (a fork of this runner, which returns only to exec): waits for slot SLOT's
# frame, reads it whole, tells the runner it took it (t on TOOK), acknowledges it to the SDK (J on
# the report pipe; a command's together with its start report) and runs it. Before it
# waits it goes once through a command's set-up with a made-up frame: a fork shares this runner's
# memory until it writes to it, and on some hosts each page it first writes costs a fault of ~0.1
# ms, which is then paid while it waits, not while a command waits for it.
sub job {
  my ($slot, $took) = @_;
  command("/", 2, "PATH=$PATH", "A=", 1, "sh", 0);
  my ($buf, $len) = ("", undef);
  for (;;) {
    my $n = sysread($in, $buf, 1 << 16, length($buf));
    exit 0 if !$n && $buf eq "";    # the SDK went away: nothing to run
    exit 125 unless $n;
    unless (defined $len) {
      my $nl = index($buf, "\n");
      if ($nl < 0) { length($buf) < 16 or exit 125; next }
      $len = substr($buf, 0, $nl);
      $len =~ /^\d{1,10}\z/ or exit 125;
      substr($buf, 0, $nl + 1) = "";
    }
    last if length($buf) >= $len;
  }
  length($buf) == $len or exit 125;    # the SDK writes one frame per job process
  my ($kind, $stdin, @f) = split(/\0/, $buf, -1);
  syswrite($took, "t");
  close($took);
  my $io = sub {
    if ($stdin eq "1") { open(STDIN, "<&", $fh[$slot][0]) or exit 125 }
    open(STDOUT, ">&", $fh[$slot][1]) or exit 125;
    open(STDERR, ">&", $fh[$slot][2]) or exit 125;
  };
  # the job's signals are its command's from here on, before the SDK hears of it (J): a kill() sent
  # right after start() must not meet the dispositions this process waited with
  $SIG{$_} = "DEFAULT" for @sigs;
  if ($kind eq "a") {
    say_("J");
    %ENV = (PATH => $PATH, MVM_NONCE => shift @f);
    $io->();
    exec { "/.mvm/sh" } "sh", "-c", $agent, "mvm-agent", @f;
    exit 125;
  }
  $kind eq "c" or exit 125;
  my ($said, $path, $argv, $via) = command(@f);
  # the acknowledgement and the start report in one write: one wake-up of the SDK, not two
  say_("J$said");
  exit($said eq "N" ? 127 : 125) unless $said eq "X";
  $io->();
  if (@$via) {
    %ENV = ();
    exec { $via->[0] } @$via;
  } else {
    exec { $path } @$argv;
  }
  my $e = $! + 0;
  print STDERR "mvm: cannot run $argv->[0]: $!\n";
  exit($e == 2 ? 127 : 126);
}
# a fresh process that waits for slot SLOT's frame and runs it (the slot's fifos already open here);
# returns [pid, pipe that says it took its frame]
sub ready {
  my $slot = $_[0];
  pipe(my $pr, my $pw) or exit 125;
  my $pid = fork();
  exit 125 unless defined $pid;
  if ($pid) {
    close($pw);
    return [$pid, $pr];
  }
  close($pr);
  job($slot, $pw);
  exit 125;
}
# this process's children: anything a job left behind (this is its subreaper)
sub children {
  open(my $c, "<", "/proc/self/task/$$/children") or return (0);
  my $l = <$c> // "";
  close($c);
  return (1, split(" ", $l));
}
# R once slot 0's fifos are open here: the SDK's opens of its ends then never wait for this side (it
# opens them without blocking, so a runner that died would give it an end-of-file, never a hang); so
# each next slot's fifos are open before the job before it is reported over
slot(0);
my $next = ready(0);
say_("R");
for my $slot (0 .. $slots - 1) {
  my ($pid, $pr) = @$next;
  # the job's process took its frame (t), or ended without one (the SDK went away, or guest code
  # killed it)
  my $took = sysread($pr, my $t, 1);
  close($pr);
  unless ($took) { waitpid($pid, 0); exit 0 }
  close($_) for @{ $fh[$slot] };
  slot($slot + 1) if $slot + 1 < $slots;
  my ($st, $left) = (0, "c");
  for (;;) {
    my $w = waitpid(-1, 0);
    if ($w == $pid) { $st = $?; last }
    if ($w == -1) { $left = "d"; last }
  }
  # what the job left behind and has ended
  for (;;) { last if waitpid(-1, 1) <= 0 }
  my ($ok, @kids) = children();
  $left = "d" if !$ok || @kids;
  say_("E$st $left\n");
  exit 0 if $left eq "d" || $slot + 1 >= $slots;
  # the next job's process is forked once this one is over, not while it runs on the same cores
  $next = ready($slot + 1);
}
exit 0;
