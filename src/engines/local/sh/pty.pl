# The PTY helper: runs one command with a pseudo-terminal as its controlling terminal. A runner execs
# it (through `/.mvm/env -i`, so no PERL* variable of the command reaches this perl) from the SDK's
# execute-only copy of perl at /.mvm/perl: guest code, same uid, cannot trace it or open its /proc
# entries, so it cannot read or write this helper's pipes (its input is frames only the host writes).
# The master comes from this sandbox's own devpts (/dev/pts is a mount point guest code cannot
# replace; the opened device is checked to be ptmx), the terminal from the master by TIOCGPTPEER
# (no path), so no guest-writable file is followed.
# Input on stdin, frames of TYPE (1 byte) LENGTH (4, big-endian) PAYLOAD, written by the host only:
#   S  the start: COLS NUL ROWS NUL FORWARD NUL ARGC NUL ARGV... NUL KEY=VALUE... (NUL-separated)
#   D  bytes for the terminal (keystrokes)    W  a new size: COLS, ROWS (2 bytes each)
#   E  end of input: the terminal's EOF character (Ctrl-D) when it is in line mode, as script(1) does
# Output on stdout: P once the terminal is made and the command forked, then the terminal's output.
# Exit: the command's status (a signal death is re-raised); 125 when no terminal could be made.
# FORWARD 1 (no cgroups): TERM, INT, HUP, QUIT reaching this helper go to the command's groups (else ignored,
# as is every other signal it can ignore: only SIGKILL, which no process can refuse, ends it early).
use strict;
use POSIX ();
$0 = "mvm-pty";
my ($TIOCSPTLCK, $TIOCGPTPEER, $TIOCSWINSZ, $TIOCSCTTY, $TIOCGPGRP) = (0x40045431, 0x5441, 0x5414, 0x540E, 0x540F);
sub fail { print STDERR "mvm-pty: $_[0]\n"; exit 125 }
binmode STDIN; binmode STDOUT;
my $in = "";
# reads one whole frame (blocking); undef at the end of stdin
sub frame {
  while (1) {
    if (length($in) >= 5) {
      my ($t, $n) = unpack("a1 N", $in);
      fail("frame too long") if $n > (1 << 20) + 5;
      if (length($in) >= 5 + $n) { my $p = substr($in, 5, $n); substr($in, 0, 5 + $n) = ""; return ($t, $p) }
    }
    my $r = sysread(STDIN, $in, 65536, length $in);
    return () unless $r;
  }
}
my ($t, $setup) = frame();
fail("no start frame") unless defined $t && $t eq "S";
my ($cols, $rows, $fwd, $argc, @rest) = split /\0/, $setup, -1;
my @argv = splice(@rest, 0, $argc);
fail("no command") unless @argv;
sysopen(my $m, "/dev/pts/ptmx", POSIX::O_RDWR() | POSIX::O_NOCTTY()) or fail("cannot open /dev/pts/ptmx: $!");
my @st = stat($m);
fail("/dev/pts/ptmx is not the terminal multiplexer") unless ($st[2] & 0170000) == 0020000 && $st[6] == ((5 << 8) | 2);
my $unlock = pack("i", 0);
ioctl($m, $TIOCSPTLCK, $unlock) or fail("cannot unlock the terminal: $!");
sub winsize { my $ws = pack("S4", $_[1], $_[0], 0, 0); ioctl($m, $TIOCSWINSZ, $ws) }
winsize($cols, $rows) or fail("cannot size the terminal: $!");
my $peer = POSIX::O_RDWR() | POSIX::O_NOCTTY();
my $sfd = ioctl($m, $TIOCGPTPEER, $peer) or fail("cannot open the terminal: $!");
$sfd = 0 + $sfd;
my $pid = fork() // fail("cannot fork: $!");
if ($pid == 0) {
  POSIX::setsid();
  open(my $s, "+<&=", $sfd) or POSIX::_exit(125);
  my $zero = 0;
  ioctl($s, $TIOCSCTTY, $zero) or POSIX::_exit(125);
  POSIX::dup2($sfd, $_) for 0 .. 2;
  POSIX::close($sfd) if $sfd > 2;
  close($m);
  %ENV = ();
  for (@rest) { my $i = index($_, "="); $ENV{substr($_, 0, $i)} = substr($_, $i + 1) if $i > 0 }
  exec { $argv[0] } @argv;
  my $e = $! + 0;
  print STDERR "mvm-pty: cannot run $argv[0]: $!\r\n";
  POSIX::_exit($e == POSIX::ENOENT() ? 127 : 126);
}
POSIX::close($sfd);
# every other signal this helper can ignore is ignored (after the fork: the command gets its own): guest code
# runs as the same uid, and a signal that ended this helper would pass for the command's own end (its status)
{
  local $SIG{__WARN__} = sub { };
  $SIG{$_} = "IGNORE" for grep { !/^(KILL|STOP|CHLD|CLD|ZERO|NUM\d+|RTMIN|RTMAX|__WARN__|__DIE__|TERM|INT|HUP|QUIT)$/ } keys %SIG;
}
# the command's end, as a descriptor select can wait on (pidfd_open, 434 on every architecture)
my $pidfd = syscall(434, $pid, 0);
fail("pidfd_open: $!") if $pidfd < 0;
my $fl = fcntl($m, POSIX::F_GETFL(), 0);
fcntl($m, POSIX::F_SETFL(), $fl | POSIX::O_NONBLOCK());
$| = 1;
print "P";
my $mfd = fileno($m);
sub put { my $b = shift; while (length $b) { my $w = syswrite(STDOUT, $b); exit 141 unless $w; substr($b, 0, $w) = "" } }
my @fwd = qw(TERM INT HUP QUIT);
for my $s (@fwd) {
  $SIG{$s} = $fwd ? sub {
    my $pg = pack("i", 0);
    my $g = ioctl($m, $TIOCGPGRP, $pg) ? unpack("i", $pg) : 0;
    kill $s, -$pid;
    kill $s, -$g if $g > 0 && $g != $pid;
  } : "IGNORE";
}
my ($pending, $inopen, $eof, $mopen, $status) = ("", 1, 0, 1, undef);
sub veof {
  my $tio = POSIX::Termios->new;
  return unless $tio->getattr($mfd) && ($tio->getlflag & POSIX::ICANON());
  $pending .= chr($tio->getcc(POSIX::VEOF()));
}
while (1) {
  my ($rin, $win) = ("", "");
  vec($rin, $pidfd, 1) = 1;
  vec($rin, $mfd, 1) = 1 if $mopen;
  vec($rin, 0, 1) = 1 if $inopen && length($pending) < 65536;
  vec($win, $mfd, 1) = 1 if $mopen && length $pending;
  my $n = select(my $r = $rin, my $w = $win, undef, $fwd ? 0.5 : undef);
  next if $n <= 0;
  if (vec($r, $mfd, 1)) {
    my $got = sysread($m, my $buf, 65536);
    if ($got) { put($buf) } elsif (!defined $got && $!{EAGAIN}) { } else { $mopen = 0 }
  }
  if (vec($r, 0, 1)) {
    my $got = sysread(STDIN, $in, 65536, length $in);
    if (!$got) { $inopen = 0; veof() unless $eof; $eof = 1 }
    while (length($in) >= 5) {
      my ($ft, $fn) = unpack("a1 N", $in);
      fail("frame too long") if $fn > (1 << 20) + 5;
      last if length($in) < 5 + $fn;
      my $p = substr($in, 5, $fn);
      substr($in, 0, 5 + $fn) = "";
      if ($ft eq "D") { $pending .= $p }
      elsif ($ft eq "W" && $fn == 4) { winsize(unpack("n n", $p)) }
      elsif ($ft eq "E") { veof() unless $eof; $eof = 1 }
    }
  }
  if (vec($w, $mfd, 1) && length $pending) {
    my $put = syswrite($m, $pending);
    if ($put) { substr($pending, 0, $put) = "" } elsif (!$!{EAGAIN}) { $pending = "" }
  }
  if (vec($r, $pidfd, 1)) {
    waitpid($pid, 0);
    $status = $?;
    last;
  }
}
# what the command wrote before it ended is in the terminal's buffer: it goes out before the exit
while ($mopen) {
  my $got = sysread($m, my $buf, 65536);
  last unless $got;
  put($buf);
}
if ($status & 127) {
  $SIG{$_} = "DEFAULT" for @fwd;
  kill $status & 127, $$;
  exit 128 + ($status & 127);
}
exit $status >> 8;
