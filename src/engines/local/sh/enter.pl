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
# A runner's job slots (MVM_SLOTS_DIR set): MVM_SLOTS triples of fifos (i.in, i.out, i.err), made
# with mknodat (number MVM_MKNODAT) in that fresh folder of the sandbox's host-only state (0711, this
# process's), owned by the sandbox's uid (MVM_SLOTS_UID) and 0600; the folder is descriptor 3, kept
# open across exec, through which the runner opens them (/proc/self/fd/3/...): nothing in the sandbox
# has a path to them.
my ($sd, $ns, $mknod, $suid) = (delete $ENV{MVM_SLOTS_DIR}, delete $ENV{MVM_SLOTS}, delete $ENV{MVM_MKNODAT}, delete $ENV{MVM_SLOTS_UID});
my $dir;    # (held until exec)
if (defined $sd && $sd ne "") {
  my $fail = sub { print STDERR "mvm-enter: cannot make the job slots in $sd: $_[0]: $!\n"; exit 125 };
  mkdir($sd, 0700) or $fail->("mkdir");
  for my $i (0 .. $ns - 1) {
    for my $k ("in", "out", "err") {
      my $p = "$sd/$i.$k";
      syscall($mknod + 0, -100, $p, 0010600, 0) == 0 or $fail->("mknodat $p");
      chown($suid, -1, $p) or $fail->("chown $p") if $> == 0;
    }
  }
  chmod(0711, $sd) or $fail->("chmod");
  $^F = 3;    # not closed on exec
  sysopen($dir, $sd, 0) or $fail->("open");
  fileno($dir) == 3 or $fail->("descriptor order");
}
# A supervisor (MVM_DETACH set): the rest of argv runs in a fork of this process, so the process its
# owner's runtime spawned and holds is not the supervisor (Deno kills the children it holds when a
# test module's runtime ends). This process stays until the supervisor closes descriptor 4 (when it has
# its "go", or when it ends), as some runtimes stop writing a child's stdin once that child is gone.
if (delete $ENV{MVM_DETACH}) {
  pipe(my $r, my $w) or do { print STDERR "mvm-enter: cannot make a pipe: $!\n"; exit 125 };
  fileno($w) == 4 or do { print STDERR "mvm-enter: descriptor order\n"; exit 125 };
  my $pid = fork();
  defined $pid or do { print STDERR "mvm-enter: cannot fork: $!\n"; exit 125 };
  if ($pid) {
    close($w);
    1 while sysread($r, my $b, 64);
    exit 0;
  }
  close($r);
  fcntl($w, 2, 0);    # F_SETFD: kept across exec
}
exec { $ARGV[0] } @ARGV or do { print STDERR "mvm-enter: cannot run $ARGV[0]: $!\n"; exit 127 };
