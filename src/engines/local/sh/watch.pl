# The supervisor's watch: blocks in the kernel until the sandbox must end, without waking up
# periodically. It waits (select) on pidfds of the owner, of the sandbox's launcher and of the
# supervisor itself, on the control fifo the SDK writes to when the lease changes, and on the TTL as
# the timeout. Its exit status says why it returned:
#   10 owner-exited, 11 ttl-expired, 12 init-exited, 13 stop() asks for a fresh jail (the seconds
#   left of the lease are then in STATE_DIR/ttl.left), 0 the supervisor is gone, 125 setup failed.
# Argv: STATE_DIR OWNER_PID OWNER_START LAUNCHER_PID TTL_SECONDS
# A detached sandbox outlives its owner; a stopped one outlives its init (markers in STATE_DIR).
# A new lease is a number of seconds from now in STATE_DIR/ttl, announced by a byte on STATE_DIR/ctl
# (inherited as fd 8).
use strict;
$0 = "mvm-watch";
my ($d, $owner, $owner_start, $launcher, $ttl) = @ARGV;
sub start_of {
  open(my $f, "<", "/proc/$_[0]/stat") or return "";
  my $s = <$f>;
  close($f);
  $s =~ s/^.*\) //s;
  my @f = split(/ /, $s);
  return "" if $f[0] eq "Z" || $f[0] eq "X";
  return $f[19];
}
# pidfd_open (434 on every architecture): readable once the process has ended
sub pidfd {
  my $fd = syscall(434, $_[0] + 0, 0);
  return undef if $fd < 0;
  open(my $fh, "<&=", $fd) or return undef;
  return $fh;
}
# a monotonic clock without Time::HiRes: seconds since boot, to 10 ms
sub uptime {
  open(my $f, "<", "/proc/uptime") or return time;
  my $u = <$f>;
  close($f);
  return (split(/ /, $u))[0];
}
my $deadline = uptime() + $ttl;
# stop() marks the folder "stopped" and wakes the watch; the supervisor answers with "stopped.done"
sub stop_asked { return -e "$d/stopped" && !-e "$d/stopped.done" }
sub restart {
  if (open(my $f, ">", "$d/ttl.left")) { printf $f "%d\n", int($deadline - uptime()) + 1; close($f) }
  exit 13;
}
my $ofh = pidfd($owner);
# the owner must be the process that started us: same pid and start time. One already gone ends the
# lease unless it detached first: a short-lived client (the CLI's create) may exit before this runs.
unless ($ofh && $owner_start ne "" && start_of($owner) eq $owner_start) {
  exit 10 unless -e "$d/detached";
  undef $ofh;
}
# the launcher may be gone (and reaped) already: a sandbox stopped right after it started
my $lfh = pidfd($launcher);
restart() if stop_asked();
exit 12 unless $lfh || -e "$d/stopped";
my $sfh = pidfd(getppid()) or exit 0;
# the control fifo is fd 8, opened by the supervisor
open(my $ctl, "<&=", 8) or exit 125;
while (1) {
  my $rin = "";
  vec($rin, fileno($_), 1) = 1 for grep { defined } ($ofh, $lfh, $sfh, $ctl);
  my $left = $deadline - uptime();
  if ($left <= 0) { exit 11 }
  my $n = select(my $rout = $rin, undef, undef, $left);
  next if $n <= 0;
  exit 0 if vec($rout, fileno($sfh), 1);
  if (vec($rout, fileno($ctl), 1)) {
    sysread($ctl, my $buf, 64);
    if (open(my $f, "<", "$d/ttl")) {
      my $s = <$f>;
      close($f);
      $deadline = uptime() + $s if defined $s && $s =~ /^\d+(\.\d+)?$/;
    }
    restart() if stop_asked();
  }
  if ($ofh && vec($rout, fileno($ofh), 1)) {
    exit 10 unless -e "$d/detached";
    undef $ofh;
  }
  if ($lfh && vec($rout, fileno($lfh), 1)) {
    restart() if stop_asked();
    exit 12 unless -e "$d/stopped";
    undef $lfh;
  }
}
