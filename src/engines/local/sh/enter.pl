# Host-side entry of every process the local engine starts toward a sandbox (supervisor, runners).
# Before anything of the sandbox runs it: joins a fresh anonymous session keyring (the caller's keys
# stay the caller's), closes every inherited descriptor above 2 (Deno passes on descriptors its own
# parent leaked), joins the cgroups named in MVM_CG1..MVM_CG8, and execs the rest of argv.
# Argv: KEYCTL_SYSCALL_NUMBER COMMAND ARGS...   (keyctl's number differs per architecture)
use strict;
my $keyctl = shift @ARGV;
# keyctl(KEYCTL_JOIN_SESSION_KEYRING = 1, NULL): a new anonymous session keyring
syscall($keyctl, 1, 0) >= 0 or do { print STDERR "mvm-enter: cannot join a fresh session keyring: $!\n"; exit 125 };
# close_range(3, ~0U, 0) (436 on every architecture); else one by one
if (syscall(436, 3, 0xffffffff, 0) != 0) {
  opendir(my $d, "/proc/self/fd") or do { print STDERR "mvm-enter: cannot list descriptors: $!\n"; exit 125 };
  my @fds = grep { /^\d+$/ && $_ > 2 } readdir($d);
  closedir($d);
  for my $fd (@fds) { if (open(my $fh, "<&=", $fd)) { close($fh) } }
}
for my $i (1 .. 8) {
  my $cg = delete $ENV{"MVM_CG$i"};
  next unless defined $cg && $cg ne "";
  open(my $fh, ">", "$cg/cgroup.procs") or do { print STDERR "mvm-enter: cannot join $cg: $!\n"; exit 125 };
  print $fh "$$\n";
  close($fh) or do { print STDERR "mvm-enter: cannot join $cg: $!\n"; exit 125 };
}
exec { $ARGV[0] } @ARGV or do { print STDERR "mvm-enter: cannot run $ARGV[0]: $!\n"; exit 127 };
