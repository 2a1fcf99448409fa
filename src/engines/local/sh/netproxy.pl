# Host-side egress proxy of one sandbox (Perl, core modules only). Runs as the engine's user in the
# host's mount, pid and network namespaces; it enters the sandbox's network namespace only to set it
# up (a route through loopback, nftables rules, three listening sockets on 198.18.0.1) and goes back,
# so every connection it makes leaves from the host, to an address it resolved and checked itself.
# In the sandbox: DNS (udp 53) answers allowed names with addresses of 198.18.0.0/15 that stand for
# the name; TCP to those (and to allowed IPv4 literals) is redirected by nftables to port 999, where
# SO_ORIGINAL_DST says which name and port the guest asked for; port 998 is an HTTP proxy (CONNECT
# and absolute URIs) for programs that honour proxy variables. Everything else is refused at once
# by nftables (TCP reset, ICMP for the rest). Nothing the guest sends is executed or followed; what it
# names is only compared with the rules. One process serves every connection (at most 256 at once).
# Secrets: for hosts a secret is bound to, TLS is terminated here (a leaf certificate per name, signed
# by the sandbox's own CA, whose key never enters the sandbox), the upstream is verified as any client
# would (system CAs, plus the policy's extra ones), and each request's head has the sandbox's
# placeholders swapped for the real values — only those bound to that host, and only when the request's
# Host, the TLS SNI and the connection's destination name the same host; anything else is refused.
# Terminated connections are served in this same loop (non-blocking OpenSSL through Net::SSLeay, loaded
# on the first one). A placeholder never leaves in clear text: a plain connection that carries one is
# refused. The values come on stdin ("PLACEHOLDER HEX" lines), never in argv or the environment.
# Upstream-to-guest bytes of a plain relay move by splice(2) through a pipe (no copy through Perl);
# guest-to-upstream bytes are read, since they are checked.
# Shared termination: a sandbox whose config names a "shared" socket hands each terminated connection
# to one terminating process per state root (this same program, run as "mvm-tls SOCKET_DIR"): it
# registers its bindings and values on a control connection (a unix socket in the host-only state
# root, 0600 in a 0700 folder, the peer's uid checked) and passes each connection's two sockets by
# number, which the terminator takes with pidfd_getfd(2) from the registered proxy only. Plain and
# spliced traffic stays here, so a proxy never loads OpenSSL while the terminator serves it; when the
# terminator is gone or full, this proxy terminates the connection itself.
# Args: mvm-egress SETNS_SYSCALL_NUMBER STATE_DIR INIT_PID INIT_START CONFIG_FILE NFT IP [SPLICE_SYSCALL_NUMBER]
#   or: mvm-tls SOCKET_DIR
# Config lines: "rule HOST PORT" | "pin NAME ADDR..." | "secret PLACEHOLDER TYPE HOST..." | "tls CA_CERT CA_KEY [UPSTREAM_CA]" | "shared SOCKET"
use strict;
# No module but strict: loading one costs every proxy memory of its own (Socket ~1.3 MB, MIME::Base64 and
# Fcntl ~0.5 MB each, warnings 0.3 MB, Errno 0.25 MB; stderr goes nowhere anyway). Linux's numbers, the
# same on every architecture the engine knows (x86-64, arm64, riscv64, loongarch64, s390x, ppc64).
sub AF_UNIX () { 1 } sub AF_INET () { 2 } sub AF_INET6 () { 10 } sub SOCK_STREAM () { 1 } sub SOCK_DGRAM () { 2 }
sub SOL_SOCKET () { 1 } sub SO_REUSEADDR () { 2 } sub SO_LINGER () { 13 } sub IPPROTO_IP () { 0 } sub IPPROTO_TCP () { 6 }
sub TCP_NODELAY () { 1 } sub MSG_PEEK () { 2 } sub EAGAIN () { 11 } sub EINPROGRESS () { 115 }
sub inet_aton { my @o = split /\./, shift; return @o == 4 ? pack("C4", @o) : undef } # dotted quads only
sub inet6 { # an IPv6 address (as ip(8) prints it) packed
  my ($l, $r) = split /::/, shift, 2;
  my @l = split /:/, $l;
  my @r = defined $r ? split(/:/, $r) : ();
  my $fill = defined $r ? 8 - @l - @r : 0;
  return $fill < 0 || @l + @r + $fill != 8 ? undef : pack("n8", map { hex } @l, ("0") x $fill, @r);
}
sub sockaddr_in { $_[1] ? pack("S n N a16 N", AF_INET6, $_[0], 0, $_[2], 0) : pack("S n a4 x8", AF_INET, $_[0], $_[2]) } # PORT, IS_V6, ADDR
sub sockaddr_un { pack("S a108", AF_UNIX, $_[0]) }
sub hex_decode { pack("H*", $_[0] // "") }
sub hex_encode { unpack("H*", $_[0]) }

my $ROLE = @ARGV && $ARGV[0] eq "mvm-tls" ? "tls" : "proxy";
shift @ARGV if @ARGV && $ARGV[0] =~ /^mvm-(egress|tls)$/;
my ($setns, $dir, $init, $init_start, $conf, $nft, $ipbin, $SPLICE) = $ROLE eq "proxy" ? @ARGV : ();
$SPLICE //= 0;
my $GW = "198.18.0.1";
my (@rules, %pin, %name2ip, %ip2name, %secret, @tls, @capem, $shared_path);
my $next = 1;

sub fail { print "error $_[0]\n"; exit 1 }
sub start_of { my $p = shift; open(my $f, "<", "/proc/$p/stat") or return ""; my $s = <$f> // ""; close $f; $s =~ s/^.*\) //s; return (split / /, $s)[19] // "" }
sub now_iso { my @t = gmtime(); sprintf("%04d-%02d-%02dT%02d:%02d:%02d.000Z", $t[5] + 1900, $t[4] + 1, @t[3, 2, 1, 0]) }
sub clean { my $s = lc(shift // ""); $s =~ s/[^a-z0-9.:_*\[\]-]/?/g; return substr($s, 0, 253) }
# A guest that opens connections in a loop must not fill the host's disk through this log: a burst of 100 lines,
# then 10 a second, and none once the sandbox's log holds 64 MiB; a line says how many were left out before it.
my ($ev_tokens, $ev_at, $ev_left) = (100, time(), 0);
sub ev {
  my ($type, $host, $port, $reason) = @_;
  my $t = time();
  $ev_tokens += ($t - $ev_at) * 10;
  $ev_tokens = 100 if $ev_tokens > 100;
  $ev_at = $t;
  if ($ev_tokens < 1 || (-s "$dir/events.jsonl" // 0) > 64 << 20) { $ev_left++; return }
  $ev_tokens--;
  my $left = $ev_left ? ",\"suppressed\":$ev_left" : "";
  $ev_left = 0;
  my $line = sprintf('{"id":"net-%d-%d%06d","time":"%s","type":"%s","source":"egress","host":"%s","port":%d%s%s}' . "\n",
    $$, $t, int(rand(1e6)), now_iso(), $type, clean($host), $port // 0, defined $reason ? ",\"reason\":\"$reason\"" : "", $left);
  if (open(my $f, ">>", "$dir/events.jsonl")) { syswrite($f, $line); close $f }
}
# an event of a connection: written here, or (in the terminator) sent to the proxy that handed it over
sub xev { my $x = shift; $x->{s}{ev}->(@_) }

if ($ROLE eq "proxy") {
  open(my $cf, "<", $conf) or fail("cannot read $conf: $!");
  while (my $l = <$cf>) {
    chomp $l;
    my @w = split / /, $l;
    if ($w[0] eq "rule") { push @rules, [$w[1], $w[2]] }
    elsif ($w[0] eq "pin") { $pin{$w[1]} = [@w[2 .. $#w]] }
    elsif ($w[0] eq "secret") { $secret{$w[1]} = { type => $w[2], hosts => [@w[3 .. $#w]] } }
    elsif ($w[0] eq "tls") { @tls = @w[1 .. $#w] }
    elsif ($w[0] eq "shared") { $shared_path = $w[1] }
  }
  close $cf;
}
if (%secret) {
  while (my $l = <STDIN>) {
    chomp $l;
    my ($ph, $v) = split / /, $l;
    $secret{$ph}{value} = hex_decode($v) if defined $v && $secret{$ph};
  }
  for (values %secret) { fail("a bound secret came without its value") unless defined $_->{value} }
  @tls >= 2 or fail("secrets are bound but no CA was given");
  # loaded on the first terminated connection (if this proxy ever terminates one itself); here only found
  for my $m ("Net/SSLeay.pm", "IO/Socket/SSL/Utils.pm") {
    grep({ -f "$_/$m" } @INC) or fail("secrets need the Perl modules Net::SSLeay and IO::Socket::SSL (apt-get install libio-socket-ssl-perl)");
  }
  for (@tls[0, 1]) { open(my $f, "<", $_) or fail("cannot read the sandbox's CA: $!"); local $/; push @capem, scalar <$f>; close $f }
}
# this proxy's own bindings: the session of every connection it terminates itself
my $SELF = { secret => \%secret, capem => \@capem, upca => $tls[2], ev => \&ev, sctx => {}, usess => {} };

sub fake_for {
  my $name = shift;
  return $name2ip{$name} if $name2ip{$name};
  return undef if $next > 60000;
  my $ip = sprintf("198.18.%d.%d", 1 + int($next / 250), 1 + $next % 250);
  $next++;
  $name2ip{$name} = $ip; $ip2name{$ip} = $name;
  return $ip;
}
sub matches { my ($r, $n) = @_; return substr($r, 0, 2) eq "*." ? (length($n) > length($r) - 1 && substr($n, -(length($r) - 1)) eq substr($r, 1)) : $r eq $n }
# a name the guest asks for is a host name, never a pattern: one with a "*" matches no rule (a "*.suffix"
# rule would match the name "*.suffix" itself, which DNS answers from the zone's wildcard record)
sub name_allowed { my $n = shift; return 0 if index($n, "*") >= 0; for (@rules) { return 1 if matches($_->[0], $n) } return 0 }
sub allowed { my ($n, $p) = @_; return 0 if index($n, "*") >= 0; for (@rules) { return 1 if $_->[1] == $p && matches($_->[0], $n) } return 0 }
sub is_v4 { return $_[0] =~ /^\d{1,3}(\.\d{1,3}){3}$/ }
# whether the placeholder PH of a session's secrets (a hash: placeholder => { hosts, value }) is bound to NAME
sub bound_to { my ($sec, $ph, $n) = @_; for (@{ $sec->{$ph}{hosts} }) { return 1 if matches($_, $n) } return 0 }
sub bound { my $n = shift; for (keys %secret) { return 1 if bound_to(\%secret, $_, $n) } return 0 }
for (@rules) { fake_for($_->[0]) unless is_v4($_->[0]) || substr($_->[0], 0, 2) eq "*." }

# the same table as src/network/addresses.ts: restricted never, private only when named exactly
sub class4 {
  my @o = @_;
  return "restricted" if $o[0] == 0 || $o[0] == 127 || ($o[0] == 169 && $o[1] == 254) || ($o[0] == 100 && $o[1] >= 64 && $o[1] <= 127);
  return "restricted" if $o[0] == 255 && $o[1] == 255 && $o[2] == 255 && $o[3] == 255;
  return "private" if $o[0] == 10 || ($o[0] == 172 && $o[1] >= 16 && $o[1] <= 31) || ($o[0] == 192 && $o[1] == 168) || $o[0] >= 224;
  return "public";
}
sub class_of {
  my ($fam, $packed) = @_;
  return class4(unpack("C4", $packed)) if $fam == AF_INET;
  my @w = unpack("n8", $packed);
  my $v4 = sub { my $i = shift; return ($w[$i] >> 8, $w[$i] & 255, $w[$i + 1] >> 8, $w[$i + 1] & 255) };
  my $zero5 = !grep { $_ } @w[0 .. 4];
  return "restricted" if !grep { $_ } @w;
  return "restricted" if !grep({ $_ } @w[0 .. 6]) && $w[7] == 1;
  return class4($v4->(6)) if $zero5 && ($w[5] == 0xffff || $w[5] == 0);
  return class4($v4->(6)) if $w[0] == 0x64 && $w[1] == 0xff9b;
  return class4($v4->(1)) if $w[0] == 0x2002;
  return class4(map { $_ ^ 255 } $v4->(6)) if $w[0] == 0x2001 && $w[1] == 0;
  return "restricted" if ($w[0] & 0xffc0) == 0xfe80;
  return "restricted" if $w[0] == 0xfd00 && $w[1] == 0x0ec2 && !grep({ $_ } @w[2 .. 6]) && $w[7] == 0x254;
  return "private" if ($w[0] & 0xfe00) == 0xfc00 || ($w[0] & 0xff00) == 0xff00;
  return "public";
}

# the host's own addresses (its services listen there): never a destination, whatever a rule says
my (%hostaddr, @lits, $tl, $pl, $ul, $ctl_listener);
if ($ROLE eq "proxy") {
  if (open(my $ipo, "-|", $ipbin, "-o", "addr", "show")) {
    while (my $l = <$ipo>) {
      if ($l =~ / inet6? ([0-9a-fA-F:.]+)\//) {
        my $a = $1;
        my $p = $a =~ /:/ ? inet6($a) : inet_aton($a);
        $hostaddr{$p} = 1 if defined $p;
      }
    }
    close $ipo;
  }
  %hostaddr or fail("cannot list the host's own addresses");

  # --- set up the sandbox's network namespace, then come back -------------------------------------
  open(my $hostns, "<", "/proc/self/ns/net") or fail("cannot open the host's network namespace: $!");
  open(my $sbns, "<", "/proc/$init/ns/net") or fail("cannot open the sandbox's network namespace: $!");
  start_of($init) eq $init_start or fail("the sandbox's init is gone");
  syscall($setns, fileno($sbns), 0x40000000) == 0 or fail("setns into the sandbox: $!");
  @lits = map { $_->[0] } grep { is_v4($_->[0]) } @rules;
  my $litset = @lits ? "ip daddr { " . join(", ", @lits) . " } meta l4proto tcp dnat to $GW:999\n" : "";
  my $ruleset = <<"NFT";
table ip mvm {
  chain nat_out {
    type nat hook output priority -100; policy accept;
    ip daddr $GW return
    udp dport 53 dnat to $GW:53
    ip daddr 127.0.0.0/8 return
    ip daddr 198.18.0.0/15 meta l4proto tcp dnat to $GW:999
    $litset
  }
  chain filter_out {
    type filter hook output priority 0; policy accept;
    ip daddr 127.0.0.0/8 accept
    ip daddr $GW accept
    meta l4proto tcp reject with tcp reset
    reject with icmp type admin-prohibited
  }
}
table ip6 mvm6 {
  chain filter_out {
    type filter hook output priority 0; policy accept;
    ip6 daddr ::1 accept
    meta l4proto tcp reject with tcp reset
    reject
  }
}
NFT
  for my $cmd ([$ipbin, "link", "set", "lo", "up"], [$ipbin, "addr", "add", "$GW/32", "dev", "lo"], [$ipbin, "route", "add", "default", "dev", "lo", "src", $GW]) {
    system({ $cmd->[0] } @$cmd) == 0 or fail("@$cmd failed");
  }
  open(my $nf, "|-", $nft, "-f", "-") or fail("cannot run nft: $!");
  print $nf $ruleset;
  close($nf) or fail("nft refused the rules");
  sub listen_on {
    my ($port, $type) = @_;
    socket(my $s, AF_INET, $type, 0) or fail("socket: $!");
    setsockopt($s, SOL_SOCKET, SO_REUSEADDR, 1);
    bind($s, sockaddr_in($port, 0, inet_aton($GW))) or fail("bind $GW:$port: $!");
    listen($s, 128) or fail("listen: $!") if $type == SOCK_STREAM;
    return $s;
  }
  $tl = listen_on(999, SOCK_STREAM);
  $pl = listen_on(998, SOCK_STREAM);
  $ul = listen_on(53, SOCK_DGRAM);
  syscall($setns, fileno($hostns), 0x40000000) == 0 or fail("setns back to the host: $!");
  close $sbns; close $hostns;
}
# the terminator: one per state root (whoever holds the lock), listening on a socket only the engine's
# uid can reach (0600 in a 0700 folder of the host-only state root; each peer's uid is checked as well)
my $LOCK;
if ($ROLE eq "tls") {
  my $sdir = $ARGV[0] // fail("no socket folder given");
  umask 077;
  open($LOCK, ">>", "$sdir/lock") or fail("cannot open $sdir/lock: $!");
  # LOCK_EX | LOCK_NB (numbers, not Fcntl: every module loaded costs each proxy memory)
  if (!flock($LOCK, 2 | 4)) { print "running\n"; exit 0 }
  unlink "$sdir/sock";
  socket($ctl_listener, AF_UNIX, SOCK_STREAM, 0) or fail("socket: $!");
  bind($ctl_listener, sockaddr_un("$sdir/sock")) or fail("bind $sdir/sock: $!");
  chmod 0600, "$sdir/sock";
  listen($ctl_listener, 128) or fail("listen: $!");
  $shared_path = "$sdir/sock";
}

# --- connections: one process, non-blocking sockets, one select loop ------------------------------
# A connection is a hash: c (the guest's socket), up (upstream), state (head | connecting | relay),
# name, port, alias, cands (addresses left to try), why, checked, in (guest bytes not yet sent
# upstream), out (upstream bytes not yet sent to the guest), ceof/ueof (each side's end), deadline.
my %conns; # fileno of the guest's socket => connection
my %handed; # (a proxy) number of a connection handed to the terminator, not yet taken => its key in %conns
my %ctl; # control connections between proxies and the terminator: fileno => { fh, fd, in, out, line, gone, s }
my $idle_since = time(); # (the terminator) since when no proxy is connected
my %resolved; # name => [expiry, candidates...]
my $MAXBUF = 1048576;
sub nonblock { my $s = shift; my $f = fcntl($s, 3, 0); fcntl($s, 4, $f | 04000) } # F_GETFL, F_SETFL, O_NONBLOCK
sub rst { my $c = shift; setsockopt($c, SOL_SOCKET, SO_LINGER, pack("ii", 1, 0)); close $c }
sub drop {
  my ($k, $reset) = @_;
  my $x = delete $conns{$k} or return;
  Net::SSLeay::free($_) for grep { $_ } @$x{qw(g u)};
  delete $handed{ $x->{hid} } if $x->{hid};
  $x->{s}{n}-- if $x->{counted};
  close $x->{up} if $x->{up};
  unpipe($x);
  $reset ? rst($x->{c}) : close($x->{c});
}
sub unpipe { my $x = shift; close $x->{pr} if $x->{pr}; close $x->{pw} if $x->{pw}; delete @$x{qw(pr pw)} }
sub deny {
  my ($k, $host, $port, $why) = @_;
  my $x = $conns{$k};
  ev("network.denied", $host, $port, $why);
  if ($x->{proxy}) {
    my $body = "mvm: egress to " . clean($host) . ":$port is refused by the sandbox's network policy ($why)\n";
    syswrite($x->{c}, "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: " . length($body) . "\r\nConnection: close\r\n\r\n$body");
    return drop($k, 0);
  }
  drop($k, 1);
}

# the addresses of NAME that may be reached, each [family, packed]; or (undef, reason)
sub candidates {
  my ($name, $port) = @_;
  my (@raw, $explicit);
  if (is_v4($name)) { @raw = ([AF_INET, inet_aton($name)]); $explicit = 1 }
  elsif ($pin{$name}) { @raw = map { [AF_INET, inet_aton($_)] } @{ $pin{$name} }; $explicit = 1 }
  elsif ($resolved{$name} && $resolved{$name}[0] > time()) { @raw = @{ $resolved{$name} }[1 .. $#{ $resolved{$name} }] }
  else {
    # resolved here, on the host, and kept 30 s (this waits for the host's resolver); a name without an IPv4
    # address gets its IPv6 ones from getaddrinfo (the Socket module is loaded for that only)
    my (undef, undef, $type, undef, @a) = gethostbyname($name);
    @raw = map { [AF_INET, $_] } @a if $type && $type == AF_INET;
    if (!@raw && eval { require Socket }) {
      my ($err, @res) = Socket::getaddrinfo($name, $port, { socktype => SOCK_STREAM, family => AF_INET6 });
      @raw = map { [AF_INET6, (Socket::unpack_sockaddr_in6($_->{addr}))[1]] } grep { $_->{family} == AF_INET6 } @res unless $err;
    }
    return (undef, "unresolved") unless @raw;
    %resolved = () if keys(%resolved) > 4096;
    $resolved{$name} = [time() + 30, @raw];
  }
  my ($why, @ok) = ("restricted-address");
  for my $c (@raw) {
    my $cls = class_of(@$c);
    next if $cls eq "restricted";
    if ($hostaddr{ $c->[1] }) { $why = "host-address"; next }
    if ($cls eq "private" && !$explicit) { $why = "private-address"; next }
    push @ok, $c;
  }
  return @ok ? (\@ok) : (undef, $why);
}

# starts a non-blocking connect to the next candidate; false when none is left
sub try_connect {
  my $x = shift;
  while (my $c = shift @{ $x->{cands} }) {
    socket(my $s, $c->[0], SOCK_STREAM, 0) or next;
    nonblock($s);
    if (connect($s, sockaddr_in($x->{port}, $c->[0] == AF_INET6, $c->[1])) || $! == EINPROGRESS) {
      $x->{up} = $s; $x->{state} = "connecting"; $x->{deadline} = time() + 10;
      return 1;
    }
    close $s;
  }
  return 0;
}

sub start_upstream {
  my ($k, $name, $port) = @_;
  my $x = $conns{$k};
  return deny($k, $name, $port, "not-allowed") unless allowed($name, $port);
  my ($cands, $why) = candidates($name, $port);
  return deny($k, $name, $port, $why) unless $cands;
  @$x{qw(name port cands)} = ($name, $port, [@$cands]);
  $x->{bound} = 1 if %secret && bound($name);
  try_connect($x) or deny($k, $name, $port, "connect-failed");
}

sub sni_of {
  my $d = shift;
  return undef unless length($d) > 43 && ord($d) == 0x16 && ord(substr($d, 5, 1)) == 1;
  my $p = 43;
  my $sl = ord(substr($d, $p, 1)); $p += 1 + $sl;
  return undef if $p + 2 > length $d;
  my $cl = unpack("n", substr($d, $p, 2)); $p += 2 + $cl;
  return undef if $p + 1 > length $d;
  my $ml = ord(substr($d, $p, 1)); $p += 1 + $ml;
  return undef if $p + 2 > length $d;
  my $end = $p + 2 + unpack("n", substr($d, $p, 2)); $p += 2;
  $end = length $d if $end > length $d;
  while ($p + 4 <= $end) {
    my ($t, $l) = unpack("nn", substr($d, $p, 4)); $p += 4;
    if ($t == 0 && $p + 5 <= $end) {
      my $nl = unpack("n", substr($d, $p + 3, 2));
      return lc(substr($d, $p + 5, $nl));
    }
    $p += $l;
  }
  return undef;
}

# whether the guest's first bytes name another host than the one the connection is for
sub names_other {
  my ($buf, $name, $alias) = @_;
  return undef if is_v4($name);
  # a ClientHello (whole: see first_complete) must name the host it was let through for
  if (ord($buf) == 0x16) { my $s = sni_of($buf); return defined $s ? ($s ne $name ? $s : undef) : "(no server name)" }
  return http_other($buf, $name, $alias);
}
# A host an HTTP head names other than NAME (or ALIAS, the address asked for): in a Host line or an absolute
# request target, lines ended by CRLF or a bare LF. Run over every byte a plain-HTTP client sends, not only its
# first head (a keep-alive connection's later requests; a body that holds such a line is refused as well).
sub http_other {
  my ($buf, $name, $alias) = @_;
  while ($buf =~ /\nhost[ \t]*:[ \t]*\[?([^\s\/:\]]*)/gi) {
    my $h = lc $1;
    return $h || "(empty host)" if $h ne $name && $h ne $alias;
  }
  while ($buf =~ /(?:^|\n)[A-Za-z]{1,20}[ \t]+[a-z][a-z0-9+.-]*:\/\/\[?([^\s\/:?#\]]*)\S*[ \t]+HTTP\//gi) {
    my $h = lc $1;
    return $h || "(empty host)" if $h ne $name && $h ne $alias;
  }
  return undef;
}
# a connection that names another host than the one it was let through for: logged and reset
sub mismatch { my ($k, $other) = @_; ev("network.denied", $other, 0, "name-mismatch"); drop($k, 1) }
# A client's first bytes (whole: first_complete) judged: the connection is checked from here on (a plain-HTTP one
# keeps being scanned, from the end of what came so far); false when they name another host (then refused)
sub judge_first {
  my ($k, $x) = @_;
  @$x{qw(checked http htail)} = (1, looks_http($x->{in}), substr($x->{in}, -1024));
  my $other = names_other($x->{in}, $x->{name} // "", $x->{alias});
  return 1 unless defined $other;
  mismatch($k, $other);
  return 0;
}
sub looks_http { return $_[0] =~ /^[A-Za-z]{1,20}[ \t]+\S+[ \t]+HTTP\/\d/ ? 1 : 0 }
# Whether a client's first bytes are enough to judge them: a TLS record whole (its ClientHello), an HTTP head
# up to its blank line, or anything else at once (a protocol whose client speaks first with neither). Until then
# nothing of them goes upstream; past 20 KiB, or a record longer than TLS allows, they are judged as they are.
sub first_complete {
  my $b = shift;
  return 1 if length($b) > 20480;
  if (ord($b) == 0x16) { return length($b) >= 5 && length($b) >= 5 + unpack("n", substr($b, 3, 2)) }
  return 1 unless $b =~ /^[A-Za-z]{1,20}(?:[ \t]|\z)/;
  my $nl = index($b, "\n");
  return 0 if $nl < 0;    # the first line is not whole yet
  # an HTTP request line: its head up to the blank line; any other line protocol at once
  return 1 unless looks_http(substr($b, 0, $nl + 1));
  return index($b, "\n\r\n") >= 0 || index($b, "\n\n") >= 0;
}

sub transparent_open {
  my $c = shift;
  my $k = fileno($c);
  my $od = getsockopt($c, IPPROTO_IP, 80); # SO_ORIGINAL_DST
  # struct sockaddr_in: family (host order), port, address; Perl hands back the whole buffer
  my ($fam, $port, @o) = defined $od && length($od) >= 8 ? unpack("S n C4", $od) : (0, 0);
  my $ip = $fam == AF_INET ? join(".", @o) : "";
  $conns{$k} = { c => $c, state => "new", in => "", out => "", alias => $ip, deadline => time() + 10 };
  my $name = $ip2name{$ip} // (grep({ $_ eq $ip } @lits) ? $ip : undef);
  return deny($k, $ip, $port, "not-allowed") unless defined $name;
  start_upstream($k, $name, $port);
}

# the HTTP proxy's request head is complete: CONNECT host:port, or an absolute http:// URI
sub proxy_head {
  my $k = shift;
  my $x = $conns{$k};
  my ($head, $early) = split /\r\n\r\n/, $x->{in}, 2;
  $x->{in} = "";
  my ($line, $rest) = split /\r\n/, $head, 2;
  $rest = defined $rest ? "$rest\r\n\r\n" : "\r\n";
  if ($line =~ /^CONNECT ([A-Za-z0-9._-]+|\[[0-9a-fA-F:.]+\]):(\d{1,5}) HTTP\/1\.[01]$/) {
    $x->{established} = "HTTP/1.1 200 Connection established\r\n\r\n";
    $x->{in} = $early // "";
    $x->{alias} = lc $1;
    return start_upstream($k, lc $1, $2);
  }
  if ($line =~ /^([A-Z]{3,10}) http:\/\/([A-Za-z0-9._-]+)(?::(\d{1,5}))?(\/\S*)? (HTTP\/1\.[01])$/) {
    my ($host, $port) = (lc $2, $3 // 80);
    # the head's Host lines (and what was sent with it) must name the URI's host: checked, and scanned on
    my $other = http_other("\n" . $rest . ($early // ""), $host, "");
    if (defined $other) { return mismatch($k, $other) }
    $x->{in} = "$1 " . ($4 // "/") . " $5\r\n$rest" . ($early // "");
    @$x{qw(checked http htail)} = (1, 1, substr($x->{in}, -1024));
    return start_upstream($k, $host, $port);
  }
  syswrite($x->{c}, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  drop($k, 0);
}

sub on_connected {
  my $k = shift;
  my $x = $conns{$k};
  my $err = unpack("i", getsockopt($x->{up}, SOL_SOCKET, 4) // pack("i", 1)); # SO_ERROR
  if ($err) { close $x->{up}; delete $x->{up}; return try_connect($x) || deny($k, $x->{name}, $x->{port}, "connect-failed") }
  setsockopt($_, IPPROTO_TCP, TCP_NODELAY, 1) for ($x->{c}, $x->{up});
  $x->{state} = "relay"; $x->{deadline} = time() + 3600;
  if ($SPLICE && pipe(my $pr, my $pw)) { # without a pipe (out of descriptors), bytes go through Perl
    nonblock($_) for ($pr, $pw);
    fcntl($pw, 1031, 1048576); # F_SETPIPE_SZ, up to the system's pipe-max-size
    @$x{qw(pr pw inpipe)} = ($pr, $pw, 0);
    $x->{pcap} = fcntl($pw, 1032, 0) || 65536; # F_GETPIPE_SZ
  }
  # bytes a client sent before its CONNECT was answered
  if (!$x->{checked} && length $x->{in} && first_complete($x->{in})) { judge_first($k, $x) or return }
  ev("network.connect", $x->{name}, $x->{port});
  $x->{out} = delete $x->{established} if $x->{established};
}

# moves bytes; false when the connection is done
sub pump {
  my ($k, $cr, $cw, $ur, $uw) = @_;
  my $x = $conns{$k};
  if ($cr && $x->{bound} && !$x->{checked} && $x->{state} eq "relay") {
    # a host a secret is bound to: look at the first bytes without taking them; TLS is terminated here
    my $peek = "";
    if (length $x->{out}) { $cr = 0 } # the CONNECT answer goes out first
    elsif (defined recv($x->{c}, $peek, 16384, MSG_PEEK) && length($peek) && ord($peek) == 0x16) {
      $x->{checked} = 1;
      my $sni = sni_of($peek);
      if (defined $sni && $sni ne $x->{name}) { ev("network.denied", $sni, 0, "name-mismatch"); drop($k, 1); return 1 }
      handoff($k) or self_terminate($k);
      return 1;
    }
  }
  if ($cr) {
    my $want = 262144;
    if ($x->{state} eq "head") {
      # the proxy's request head is read up to its end and no further: what follows it (a TLS ClientHello
      # sent with its CONNECT) stays in the socket for whatever serves the connection, this relay or a terminator
      my $have = length $x->{in};
      recv($x->{c}, my $peek, 16384, MSG_PEEK);
      my $i = index($x->{in} . ($peek // ""), "\r\n\r\n", $have > 3 ? $have - 3 : 0);
      $want = $i >= 0 ? $i + 4 - $have : 16384;
    }
    my $r = sysread($x->{c}, my $buf, $want);
    if (defined $r && $r == 0) { $x->{ceof} = 1 }
    elsif (!defined $r) { return 0 unless $! == EAGAIN }
    else {
      if (%secret) { # a placeholder never leaves in clear text (nor in a spliced stream, where it can only be a placeholder)
        my $scan = ($x->{tail} // "") . $buf;
        if ($scan =~ /mvm-secret-[0-9a-f]{48}/) {
          my ($h, $p) = $scan =~ m{^[A-Z]{3,10} http://([A-Za-z0-9._-]+)(?::(\d{1,5}))?} ? (lc $1, $2 // 80) : ("", 0);
          deny($k, $x->{name} // $h, $x->{port} // $p, "placeholder-in-cleartext");
          return 1;
        }
        $x->{tail} = substr($scan, -58);
      }
      if ($x->{state} eq "head") {
        $x->{in} .= $buf;
        return 0 if length($x->{in}) > 16384;
        proxy_head($k) if $x->{in} =~ /\r\n\r\n/;
        return exists $conns{$k};
      }
      if (!$x->{checked}) {
        # held back until the first record or head is whole (a name split over two writes is still seen)
        $x->{in} .= $buf;
        return 1 unless first_complete($x->{in}) || $x->{ceof};
        judge_first($k, $x) or return 1;
      } else {
        if ($x->{http} && !is_v4($x->{name} // "")) {
          # every later byte of a plain-HTTP client too, with the end of what came before (a line split over writes)
          # (a NUL first: the window's start is no line's start)
          my $other = http_other("\0" . ($x->{htail} // "") . $buf, $x->{name} // "", $x->{alias});
          if (defined $other) { mismatch($k, $other); return 1 }
          $x->{htail} = substr(($x->{htail} // "") . $buf, -1024);
        }
        $x->{in} .= $buf;
      }
    }
  }
  if ($ur && $x->{pw}) {
    # in and out of the pipe while either moves (a few rounds): one wake-up then carries what the sockets
    # hold, not one socket buffer, which halves the wake-ups of a download on a host where they are dear
    for (1 .. 8) {
      my $moved = 0;
      if ($ur && $x->{inpipe} < $x->{pcap}) {
        my $n = syscall($SPLICE, fileno($x->{up}), 0, fileno($x->{pw}), 0, $x->{pcap} - $x->{inpipe}, 3); # SPLICE_F_MOVE | NONBLOCK
        if ($n > 0) { $x->{inpipe} += $n; $moved = 1 }
        elsif ($n == 0) { $x->{ueof} = 1; $ur = 0 }
        elsif ($! != EAGAIN) { return 0 }
        else { $ur = 0 }
      }
      last if length $x->{out} || !$x->{inpipe};
      my $n = syscall($SPLICE, fileno($x->{pr}), 0, fileno($x->{c}), 0, $x->{inpipe}, 3);
      if ($n > 0) { $x->{inpipe} -= $n; $moved = 1 }
      elsif ($! != EAGAIN) { return 0 }
      last unless $moved;
    }
  } elsif ($ur) {
    my $r = sysread($x->{up}, my $buf, 262144);
    if (defined $r && $r == 0) { $x->{ueof} = 1 }
    elsif (!defined $r) { return 0 unless $! == EAGAIN }
    else { $x->{out} .= $buf }
  }
  if ($x->{up} && $x->{state} eq "relay" && length $x->{in} && $x->{checked}) {
    my $w = syswrite($x->{up}, $x->{in});
    return 0 if !defined $w && $! != EAGAIN;
    substr($x->{in}, 0, $w, "") if $w;
  }
  if (length $x->{out}) {
    my $w = syswrite($x->{c}, $x->{out});
    return 0 if !defined $w && $! != EAGAIN;
    substr($x->{out}, 0, $w, "") if $w;
  }
  if ($x->{inpipe} && !length $x->{out}) {
    my $n = syscall($SPLICE, fileno($x->{pr}), 0, fileno($x->{c}), 0, $x->{inpipe}, 3);
    if ($n > 0) { $x->{inpipe} -= $n }
    elsif ($! != EAGAIN) { return 0 }
  }
  my $pending = length($x->{out}) || $x->{inpipe};
  shutdown($x->{up}, 1), $x->{ushut} = 1 if $x->{ceof} && !$x->{ushut} && $x->{up} && $x->{state} eq "relay" && !length $x->{in};
  shutdown($x->{c}, 1), $x->{cshut} = 1 if $x->{ueof} && !$x->{cshut} && !$pending;
  return !($x->{ceof} && $x->{ueof} && !length($x->{in}) && !$pending) && !($x->{ceof} && $x->{state} ne "relay");
}

# --- the secrets parts, compiled (string evals, before the main loop) only where they can be used: a proxy
# without bound secrets needs neither, a proxy with them needs the hand-over, and TLS termination only when
# it terminates a connection itself; the terminator needs both. Each op tree not compiled is memory every
# such proxy keeps (~0.6 MB for both).
my $HANDOVER_PL = <<'PERL';
# --- the shared terminator and its proxies: a line protocol on a unix socket -------------------------
# proxy -> terminator: "ca CERT KEY [UPSTREAM_CA_PATH]" (hex), "secret PLACEHOLDER VALUE HOST..." (the
# value hex), "go", then "conn ID GUEST_FD UPSTREAM_FD NAME PORT" per connection (numbers of the proxy's
# own descriptors, which the terminator takes with pidfd_getfd from the process it checked at accept).
# terminator -> proxy: "ok" once registered; "took ID" (the proxy closes its copies), "full ID" (the proxy
# terminates it itself), "ev TYPE HOST PORT REASON" (an event the proxy writes to its sandbox's log).
sub ctl_new {
  my ($fh, $line, $gone, $s) = @_;
  nonblock($fh);
  return $ctl{ fileno $fh } = { fh => $fh, fd => fileno $fh, in => "", out => "", line => $line, gone => $gone, s => $s };
}
sub ctl_close {
  my $t = shift;
  delete $ctl{ $t->{fd} } or return 0;
  $t->{dead} = 1;
  close $t->{fh};
  $t->{gone}->($t);
  return 0;
}
sub ctl_flush {
  my $t = shift;
  return 1 if $t->{dead} || !length $t->{out};
  my $w = syswrite($t->{fh}, $t->{out});
  if (defined $w) { substr($t->{out}, 0, $w, ""); return 1 }
  return $! == EAGAIN ? 1 : ctl_close($t);
}
sub ctl_send { my ($t, $line) = @_; return 0 if $t->{dead}; $t->{out} .= $line; return ctl_flush($t) }
sub ctl_read {
  my $t = shift;
  my $r = sysread($t->{fh}, my $buf, 65536);
  return 1 if !defined $r && $! == EAGAIN;
  return ctl_close($t) unless $r;
  $t->{in} .= $buf;
  while (!$t->{dead} && (my $i = index($t->{in}, "\n")) >= 0) {
    my $line = substr($t->{in}, 0, $i + 1, "");
    chop $line;
    $t->{line}->($t, split / /, $line);
  }
  return length($t->{in}) > 1048576 ? ctl_close($t) : 1;
}

# (a proxy) the terminator's control connection, registered with this sandbox's bindings and values; undef
# when there is none to reach (then this proxy terminates its connections itself, and tries again a second later)
my ($shared, $shared_tried, $hand_id) = (undef, 0, 0);
sub shared_connect {
  return $shared if $shared;
  return undef unless defined $shared_path && time() != $shared_tried;
  $shared_tried = time();
  socket(my $fh, AF_UNIX, SOCK_STREAM, 0) or return undef;
  nonblock($fh);
  connect($fh, sockaddr_un($shared_path)) or return undef;
  my $t = $shared = ctl_new($fh, \&from_terminator, \&terminator_gone);
  ctl_send($t, join(" ", "ca", map({ hex_encode($_) } @capem, defined $tls[2] ? $tls[2] : ())) . "\n");
  ctl_send($t, "secret $_ " . hex_encode($secret{$_}{value}) . " @{ $secret{$_}{hosts} }\n") for sort keys %secret;
  ctl_send($t, "go\n");
  return $shared;
}
sub from_terminator {
  my ($t, $what, $id, @w) = @_;
  if ($what eq "took" || $what eq "full") {
    my $k = delete $handed{ $id // "" } // return;
    my $x = $conns{$k} or return;
    delete $x->{hid};
    if ($what eq "full") { $x->{state} = "relay"; return self_terminate($k) } # the terminator is at its bounds: served here
    delete $conns{$k}; # taken: these copies of its sockets are closed, the terminator has its own
    close $x->{c}; close $x->{up};
  } elsif ($what eq "ev" && @w == 3 && $id =~ /^network\.(connect|denied)$/ && $w[1] =~ /^\d{1,5}$/ && $w[2] =~ /^[a-z-]{1,40}$/) {
    ev($id, $w[0] eq "-" ? "" : $w[0], $w[1], $w[2] eq "-" ? undef : $w[2]);
  }
}
sub terminator_gone {
  $shared = undef;
  drop($_, 1) for values %handed; # handed over, maybe taken: their guests see a reset
  %handed = ();
}
# hands a connection about to be terminated (its ClientHello still unread in the guest's socket) to the terminator
sub handoff {
  my $k = shift;
  my $t = shared_connect() or return 0;
  my $x = $conns{$k};
  my $id = ++$hand_id;
  ctl_send($t, "conn $id " . fileno($x->{c}) . " " . fileno($x->{up}) . " $x->{name} $x->{port}\n") or return 0;
  unpipe($x);
  @$x{qw(state deadline hid)} = ("handed", time() + 10, $id);
  $handed{$id} = $k;
  return 1;
}
PERL

my $TLS_PL = <<'PERL';
# --- TLS termination for hosts a secret is bound to: in this process, non-blocking -----------------
# Net::SSLeay (OpenSSL) is loaded on the first terminated connection, so a sandbox whose bound hosts
# are not called (or whose connections the shared terminator takes) costs what plain egress does.
# Everything is kept per session (a proxy's own bindings, or one registered proxy in the terminator),
# never shared between sandboxes: the CA and leaf key, one leaf certificate and server context per name
# (at most 64, then made again), one client context for upstreams (system CAs plus the session's extra
# ones; chain and name checked by OpenSSL), the upstream sessions to resume. A connection then costs two
# handshakes that run at the same time, and no process.
my $ssl_loaded;
sub ctx_common {
  my $ctx = shift;
  Net::SSLeay::CTX_set_min_proto_version($ctx, 0x0303) or die; # TLS 1.2
  Net::SSLeay::CTX_set_mode($ctx, 1 | 2); # ENABLE_PARTIAL_WRITE | ACCEPT_MOVING_WRITE_BUFFER
  Net::SSLeay::CTX_set_read_ahead($ctx, 1); # one read(2) takes what the socket has, not a record's header and then its body
  return $ctx;
}
sub ssl_load {
  return $ssl_loaded if defined $ssl_loaded;
  $ssl_loaded = eval {
    require Net::SSLeay;
    require IO::Socket::SSL::Utils;
    require MIME::Base64; # Basic credentials
    Net::SSLeay::load_error_strings();
    Net::SSLeay::SSLeay_add_ssl_algorithms();
    Net::SSLeay::randomize();
    1;
  } ? 1 : 0;
}
sub tls_init {
  my $s = shift;
  return $s->{ok} if defined $s->{ok};
  $s->{ok} = ssl_load() && eval {
    $s->{cacert} = IO::Socket::SSL::Utils::PEM_string2cert($s->{capem}[0]);
    $s->{cakey} = IO::Socket::SSL::Utils::PEM_string2key($s->{capem}[1]);
    $s->{leafkey} = IO::Socket::SSL::Utils::KEY_create_ec();
    my $uctx = $s->{uctx} = ctx_common(Net::SSLeay::CTX_new() || die);
    Net::SSLeay::CTX_set_verify($uctx, 1); # VERIFY_PEER: a handshake whose chain or name does not verify fails
    # the system's CAs: from a hashed folder when there is one (each looked up when a chain needs it), else
    # OpenSSL's defaults (which parse the whole bundle: ~0.8 MB more)
    my ($cd, $hashed);
    $hashed = grep { /^[0-9a-f]{8}\.\d+$/ } readdir $cd if opendir($cd, "/etc/ssl/certs");
    $hashed ? Net::SSLeay::CTX_load_verify_locations($uctx, "", "/etc/ssl/certs") : Net::SSLeay::CTX_set_default_verify_paths($uctx) or die;
    Net::SSLeay::CTX_load_verify_locations($uctx, $s->{upca}, "") or die if defined $s->{upca};
    Net::SSLeay::CTX_set_alpn_protos($uctx, ["http/1.1"]) == 0 or die;
    $s->{cacert} && $s->{cakey} && $s->{leafkey};
  } ? 1 : 0;
  return $s->{ok};
}
sub server_ctx {
  my ($s, $name) = @_;
  my $sctx = $s->{sctx};
  return $sctx->{$name} if $sctx->{$name};
  if (keys(%$sctx) >= 64) { Net::SSLeay::CTX_free($_) for values %$sctx; %$sctx = () } # a connection holds its own reference
  my $cert = (IO::Socket::SSL::Utils::CERT_create(subject => { commonName => substr($name, 0, 64) }, subjectAltNames => [[DNS => $name]],
    issuer => [$s->{cacert}, $s->{cakey}], key => $s->{leafkey}, purpose => "server", not_before => time() - 3600, not_after => time() + 86400 * 32))[0] or return undef;
  my $ctx = ctx_common(Net::SSLeay::CTX_new() || return undef);
  my $ok = Net::SSLeay::CTX_use_certificate($ctx, $cert) && Net::SSLeay::CTX_use_PrivateKey($ctx, $s->{leafkey});
  Net::SSLeay::X509_free($cert);
  Net::SSLeay::CTX_set_alpn_select_cb($ctx, ["http/1.1"]);
  $ok or do { Net::SSLeay::CTX_free($ctx); return undef };
  return $sctx->{$name} = $ctx;
}
# frees what a session holds of OpenSSL (its proxy is gone)
sub session_free {
  my $s = shift;
  return unless $s->{ok};
  Net::SSLeay::CTX_free($_) for values %{ $s->{sctx} };
  Net::SSLeay::SESSION_free($_) for values %{ $s->{usess} };
  Net::SSLeay::CTX_free($s->{uctx}) if $s->{uctx};
  Net::SSLeay::X509_free($s->{cacert}) if $s->{cacert};
  Net::SSLeay::EVP_PKEY_free($_) for grep { $_ } @$s{qw(cakey leafkey)};
  %$s = ();
}

sub terminate {
  my $k = shift;
  my $x = $conns{$k};
  my $s = $x->{s} //= $SELF;
  my ($name, $port) = @$x{qw(name port)};
  my $ctx = tls_init($s) && eval { server_ctx($s, $name) };
  $ctx or do { xev($x, "network.denied", $name, $port, "tls-unavailable"); return drop($k, 1) };
  unpipe($x);
  my $g = Net::SSLeay::new($ctx);
  my $u = Net::SSLeay::new($s->{uctx});
  @$x{qw(state g u ghs uhs in gout uout mode left geof ueof)} = ("tls", $g, $u, 0, 0, "", "", "", "head", 0, "", "");
  $x->{deadline} = time() + 20;
  $g && $u && Net::SSLeay::set_fd($g, fileno $x->{c}) && Net::SSLeay::set_fd($u, fileno $x->{up}) or return drop($k, 1);
  # verified as any client would: the context's CAs, the name this connection is for
  my $param = Net::SSLeay::get0_param($u);
  if (is_v4($name)) { Net::SSLeay::X509_VERIFY_PARAM_set1_ip_asc($param, $name) or return drop($k, 1) }
  else {
    Net::SSLeay::X509_VERIFY_PARAM_set_hostflags($param, 4); # NO_PARTIAL_WILDCARDS
    Net::SSLeay::X509_VERIFY_PARAM_set1_host($param, $name) && Net::SSLeay::set_tlsext_host_name($u, $name) or return drop($k, 1);
  }
  # the last verified session with this name and port is offered again (a resumed handshake: no certificate to sign or check)
  Net::SSLeay::set_session($u, $s->{usess}{"$name $port"}) if $s->{usess}{"$name $port"};
  drop($k, 1) unless tls_pump($k);
}

# one OpenSSL call's outcome on a non-blocking socket: (bytes or 1) | (0, "r" or "w": try again when ready) | (undef, "eof" or "err")
sub ssl_io {
  my ($s, $r) = @_;
  return ($r, "") if $r > 0;
  my $e = Net::SSLeay::get_error($s, $r);
  Net::SSLeay::ERR_clear_error();
  return $e == 2 ? (0, "r") : $e == 3 ? (0, "w") : (undef, $e == 6 ? "eof" : "err");
}

# a refusal inside a terminated connection: the guest gets an HTTP answer, the upstream nothing more
sub tls_deny { die { why => $_[0], status => $_[1] // 403 } }
sub swap {
  my ($x, $v) = @_;
  my $sec = $x->{s}{secret};
  $v =~ s/(mvm-secret-[0-9a-f]{48})/$sec->{$1} && bound_to($sec, $1, $x->{name}) ? $sec->{$1}{value} : tls_deny("placeholder-not-bound")/ge;
  return $v;
}
sub rewrite_head {
  my ($x, $text) = @_;
  my @lines = split /\r\n/, $text;
  my $req = shift @lines // "";
  # strict lines (a bare CR or LF inside one is refused: a server that ends lines there would read the rest,
  # a swapped value included, as something else), and a target that is a path here, or names this host
  my ($method, $target) = $req =~ /^([A-Z]{3,10}) (\S+) HTTP\/1\.[01]\z/ or tls_deny("not-http", 400);
  tls_deny("not-http", 400) if $method eq "CONNECT";
  unless (substr($target, 0, 1) eq "/" || ($target eq "*" && $method eq "OPTIONS")) {
    my ($th, $tp) = $target =~ m{^https?://([^/:?#\[\]@]+)(?::(\d{1,5}))?(?:[/?#]|\z)}i or tls_deny("bad-target", 400);
    tls_deny("name-mismatch") unless lc($th) eq $x->{name} && (!defined $tp || $tp == $x->{port});
  }
  my ($host, $cl, $chunked, $upgrade);
  for (@lines) {
    my ($k, $v) = /^([!#\$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\r\n]*?)[ \t]*\z/ or tls_deny("bad-header", 400);
    my $lk = lc $k;
    if ($lk eq "host") { tls_deny("two-hosts", 400) if defined $host; ($host = lc $v) =~ s/:\d{1,5}$// }
    elsif ($lk eq "content-length") { tls_deny("bad-length", 400) if $v !~ /^\d{1,15}$/ || (defined $cl && $cl != $v); $cl = $v }
    elsif ($lk eq "transfer-encoding") { tls_deny("bad-length", 400) if lc($v) ne "chunked"; $chunked = 1 }
    elsif ($lk eq "upgrade") { $upgrade = 1 }
  }
  # the Host a request names, the TLS name and the connection's destination must agree
  tls_deny("name-mismatch") unless defined $host && $host eq $x->{name};
  tls_deny("bad-length", 400) if $chunked && defined $cl;
  for (@lines) {
    my ($k, $v) = split /:/, $_, 2;
    if (lc($k) eq "authorization" && $v =~ /^[ \t]*Basic[ \t]+([A-Za-z0-9+\/=]+)[ \t]*$/i) {
      my $d = MIME::Base64::decode_base64($1);
      if ($d =~ /mvm-secret-/) { $_ = "$k: Basic " . MIME::Base64::encode_base64(swap($x, $d), ""); next }
    }
    $_ = "$k:" . swap($x, $v) if $v =~ /mvm-secret-/;
  }
  # A request with a body is the last of its connection: the server is told to close after it, and nothing the
  # guest sends after its body goes upstream. A body the server frames otherwise than this relay (a GET body a
  # server ignores) could hold a request of the guest's, and the next request's swapped value would follow it.
  if ($chunked || ($cl // 0) > 0) {
    @lines = grep { !/^(?:connection|keep-alive)[ \t]*:/i } @lines;
    push @lines, "Connection: close";
    $x->{last_req} = 1;
  }
  @$x{qw(mode left)} = $upgrade ? ("raw", 0) : $chunked ? ("size", 0) : ($cl // 0) > 0 ? ("len", $cl) : ("head", 0);
  return join("\r\n", $req, @lines) . "\r\n\r\n";
}
# moves what of the guest's bytes may go upstream now to uout: request heads rewritten; bodies as they
# are, by their length or chunk framing (never searched or copied through string operations per byte)
sub frame {
  my $x = shift;
  my $in = \$x->{in};
  my $out = "";
  while (length $$in) {
    my $mode = $x->{mode};
    if ($mode eq "head") {
      if ($x->{last_req}) { $$in = ""; last }    # after a request with a body: nothing more goes upstream
      my $i = index($$in, "\r\n\r\n");
      if ($i < 0) { tls_deny("head-too-large", 431) if length($$in) > 65536; last }
      $out .= rewrite_head($x, substr($$in, 0, $i + 4, ""));
    } elsif ($mode eq "len" || $mode eq "data") {
      if ($x->{left} >= length $$in) { $x->{left} -= length $$in; $out .= $$in; $$in = "" }
      else { $out .= substr($$in, 0, $x->{left}, ""); $x->{left} = 0 }
      $x->{mode} = $mode eq "len" ? "head" : "size" if $x->{left} == 0;
    } elsif ($mode eq "size" || $mode eq "trailer") {
      my $i = index($$in, "\r\n");
      if ($i < 0) { tls_deny("bad-chunk", 400) if length($$in) > 4096; last }
      my $line = substr($$in, 0, $i + 2, "");
      $out .= $line;
      if ($mode eq "trailer") { $x->{mode} = "head" if $line eq "\r\n"; next }
      $line =~ /^([0-9a-fA-F]{1,12})(?:;[^\r\n]*)?\r\n\z/ or tls_deny("bad-chunk", 400);
      @$x{qw(mode left)} = hex($1) == 0 ? ("trailer", 0) : ("data", hex($1) + 2);
    } else { $out .= $$in; $$in = "" }
  }
  $x->{uout} .= $out;
}

# reads what one side has (up to the buffer cap) onto $x->{$to}; "eof" or "err" when that side ended.
# Stopped at the cap, OpenSSL may hold whole records the socket no longer shows: more_$to says so.
sub tls_read {
  my ($x, $s, $to) = @_;
  $x->{"more_$to"} = 1;
  while (length($x->{$to}) < $MAXBUF) {
    my ($d, $r) = Net::SSLeay::read($s, 262144);
    my ($ok, $want) = ssl_io($s, $r);
    if ($ok) { $x->{$to} .= $d; next }
    $x->{"more_$to"} = 0;
    $x->{ $s == $x->{g} ? "gw" : "uw" } = 1 if defined $ok && $want eq "w";
    return defined $ok ? "" : $want;
  }
  return "";
}
sub tls_write {
  my ($x, $s, $from) = @_;
  return 1 unless length $x->{$from};
  my ($ok, $want) = ssl_io($s, Net::SSLeay::write($s, $x->{$from}));
  if ($ok) { substr($x->{$from}, 0, $ok, ""); return 1 }
  $x->{ $s == $x->{g} ? "gw" : "uw" } = 1 if defined $ok && $want eq "w";
  return defined $ok;
}

sub keep_session {
  my $x = shift;
  $x->{kept} = 1;
  # a copy: OpenSSL marks a connection's own session unusable when that connection ends without close_notify
  my $live = Net::SSLeay::get1_session($x->{u}) or return;
  my $s = Net::SSLeay::d2i_SSL_SESSION(Net::SSLeay::i2d_SSL_SESSION($live));
  Net::SSLeay::SESSION_free($live);
  $s or return;
  my $key = "$x->{name} $x->{port}";
  my $usess = $x->{s}{usess};
  if (keys(%$usess) >= 64 && !$usess->{$key}) { Net::SSLeay::SESSION_free($_) for values %$usess; %$usess = () }
  Net::SSLeay::SESSION_free($usess->{$key}) if $usess->{$key};
  $usess->{$key} = $s;
}

# moves a terminated connection on as far as it can without waiting; false when it is done
sub tls_pump {
  my $k = shift;
  my $x = $conns{$k};
  my $ok = eval { tls_step($x) };
  return $ok if defined $ok;
  my $d = $@;
  return 0 unless ref $d eq "HASH" && $x->{ghs};
  # refused: answer the guest, send nothing more upstream, and close once the answer is out
  xev($x, "network.denied", $x->{name}, $x->{port}, $d->{why});
  my $body = "mvm: this request to " . clean($x->{name}) . " is refused by the sandbox's secret policy ($d->{why})\n";
  $x->{gout} .= "HTTP/1.1 $d->{status} Refused\r\nContent-Type: text/plain\r\nContent-Length: " . length($body) . "\r\nConnection: close\r\n\r\n$body";
  Net::SSLeay::free($x->{u}) if $x->{u};
  close $x->{up} if $x->{up};
  delete @$x{qw(u up)};
  @$x{qw(in uout closing deadline)} = ("", "", 1, time() + 10);
  return eval { tls_step($x) } // 0;
}
sub tls_step {
  my $x = shift;
  my ($g, $u) = @$x{qw(g u)};
  @$x{qw(gw uw)} = (0, 0);
  Net::SSLeay::ERR_clear_error();
  if (!$x->{ghs}) {
    my ($ok, $want) = ssl_io($g, Net::SSLeay::accept($g));
    if ($ok) { $x->{ghs} = 1 }
    elsif (defined $ok) { $x->{gw} = 1 if $want eq "w" }
    else { xev($x, "network.denied", $x->{name}, $x->{port}, "guest-tls-failed"); return 0 }
  }
  if ($u && !$x->{uhs} && !$x->{ufail}) {
    my ($ok, $want) = ssl_io($u, Net::SSLeay::connect($u));
    if ($ok) {
      my $peer = Net::SSLeay::get_peer_certificate($u);
      Net::SSLeay::X509_free($peer) if $peer;
      $peer && Net::SSLeay::get_verify_result($u) == 0 ? ($x->{uhs} = 1) : ($x->{ufail} = 1);
    } elsif (defined $ok) { $x->{uw} = 1 if $want eq "w" }
    else { $x->{ufail} = 1 }
  }
  return 1 unless $x->{ghs};
  tls_deny("upstream-tls-unverified", 502) if $x->{ufail} && !$x->{closing};
  if ($x->{uhs} && !$x->{said}++) { xev($x, "network.connect", $x->{name}, $x->{port}, "tls-terminated"); $x->{deadline} = time() + 3600 }
  if ($x->{closing}) { # the answer goes out, then close_notify; what the guest still sends is read and dropped
    return 0 unless tls_write($x, $g, "gout");
    return 1 if length $x->{gout} || $x->{gw};
    if (!$x->{cshut}++) { Net::SSLeay::shutdown($g); Net::SSLeay::ERR_clear_error(); shutdown($x->{c}, 1) }
    my $r = sysread($x->{c}, my $junk, 65536);
    return defined $r ? $r > 0 : $! == EAGAIN;
  }
  if (!$x->{geof} && length($x->{uout}) < $MAXBUF) {
    my $end = tls_read($x, $g, "in");
    frame($x) if length $x->{in};
    $x->{geof} = $end if $end;
  }
  return 0 if $x->{geof} eq "err" && !$x->{uhs};
  if ($x->{uhs}) {
    return 0 unless tls_write($x, $u, "uout");
    if (!$x->{ueof} && length($x->{gout}) < $MAXBUF) {
      my $had = length $x->{gout};
      my $end = tls_read($x, $u, "gout");
      $x->{ueof} = $end if $end;
      keep_session($x) if !$x->{kept} && length($x->{gout}) > $had; # TLS 1.3 sends its tickets before the first answer
    }
    if ($x->{geof} && !$x->{ushut} && !length $x->{uout}) { $x->{ushut} = 1; Net::SSLeay::shutdown($u) if $x->{geof} eq "eof"; Net::SSLeay::ERR_clear_error(); shutdown($x->{up}, 1) }
  }
  return 0 unless tls_write($x, $g, "gout");
  if ($x->{ueof} && !$x->{cshut} && !length $x->{gout}) {
    # a clean end upstream is passed on as one (close_notify); a cut-off one as a cut (no close_notify)
    $x->{cshut} = 1;
    Net::SSLeay::shutdown($g) if $x->{ueof} eq "eof";
    Net::SSLeay::ERR_clear_error();
    shutdown($x->{c}, 1);
  }
  return !($x->{geof} && ($x->{ueof} || !$x->{uhs}) && !length $x->{gout});
}

# what a terminated connection waits for (bits in the select sets); true when OpenSSL holds bytes it could take now
sub tls_wants {
  my ($x, $rin, $win) = @_;
  my ($c, $up) = (fileno($x->{c}), $x->{up} ? fileno($x->{up}) : undef);
  my $gr = !$x->{closing} && !$x->{geof} && length($x->{uout}) < $MAXBUF;
  vec($$rin, $c, 1) = 1 if !$x->{ghs} || $x->{closing} || $gr;
  vec($$win, $c, 1) = 1 if $x->{gw} || length $x->{gout};
  my $hot = $gr && $x->{more_in};
  return $hot unless defined $up;
  my $ur = $x->{uhs} && !$x->{ueof} && length($x->{gout}) < $MAXBUF;
  vec($$rin, $up, 1) = 1 if !$x->{uhs} || $ur;
  vec($$win, $up, 1) = 1 if $x->{uw} || ($x->{uhs} && length $x->{uout});
  return $hot || ($ur && $x->{more_gout});
}

# (the terminator) a proxy connects: only the engine's uid, only an egress proxy; its sockets are taken from
# that process (a pidfd made now) and its bindings and values serve its own connections only
my $PER_SESSION = 64; # terminated connections at once per sandbox; more are served by the sandbox's own proxy
my $TOTAL = 512;
sub session_open {
  accept(my $fh, $ctl_listener) or return;
  my ($pid, $uid) = unpack("iI", getsockopt($fh, SOL_SOCKET, 17) // ""); # SO_PEERCRED
  return close $fh unless defined $uid && $uid == $> && $pid > 1;
  my $pidfd = syscall(434, $pid, 0); # pidfd_open
  return close $fh if $pidfd < 0;
  open(my $pfh, "<&=", $pidfd) or return close $fh;
  open(my $cmd, "<", "/proc/$pid/cmdline") or return close $fh;
  my $argv = do { local $/; <$cmd> } // "";
  close $cmd;
  return close $fh unless index($argv, "\0mvm-egress\0") >= 0;
  my $s = { secret => {}, capem => [], sctx => {}, usess => {}, n => 0, pidfd => $pfh };
  my $t = ctl_new($fh, \&from_proxy, \&session_gone, $s);
  $s->{ev} = sub { ctl_send($t, join(" ", "ev", $_[0], clean($_[1]) || "-", $_[2] // 0, $_[3] // "-") . "\n") };
}
sub from_proxy {
  my ($t, $what, @w) = @_;
  my $s = $t->{s};
  if ($what eq "conn" && @w == 5) {
    my ($id, $gfd, $ufd, $name, $port) = @w;
    my $fits = $s->{go} && $s->{n} < $PER_SESSION && keys(%conns) < $TOTAL && $name =~ /^[a-z0-9._-]{1,253}$/ && $port =~ /^\d{1,5}$/;
    my ($g, $u) = $fits ? map({ syscall(438, fileno $s->{pidfd}, $_ + 0, 0) } $gfd, $ufd) : (-1, -1); # pidfd_getfd
    my ($c, $up);
    open($c, "+<&=", $g) if $g >= 0;
    open($up, "+<&=", $u) if $u >= 0;
    if ($c && $up) {
      ctl_send($t, "took $id\n");
      my $k = fileno $c;
      $conns{$k} = { c => $c, up => $up, s => $s, name => $name, port => $port, state => "relay", counted => 1, in => "", out => "", deadline => time() + 20 };
      $s->{n}++;
      return terminate($k);
    }
    return ctl_send($t, "full $id\n");
  }
  return ctl_close($t) if $s->{go}; # bindings are given once, before the first connection
  if ($what eq "ca" && @w >= 2) { $s->{capem} = [map { hex_decode($_) } @w[0, 1]]; $s->{upca} = hex_decode($w[2]) if defined $w[2] }
  elsif ($what eq "secret" && @w >= 3) { $s->{secret}{ $w[0] } = { value => hex_decode($w[1]), hosts => [@w[2 .. $#w]] } }
  elsif ($what eq "go") {
    tls_init($s) or return ctl_close($t);
    # bound names' leaf contexts are made now, off any connection's path (the first 16: each takes a signature,
    # and the terminator's other sandboxes wait meanwhile)
    my %names = map { $_ => 1 } grep { !/^\*\./ } map { @{ $_->{hosts} } } values %{ $s->{secret} };
    my @names = sort keys %names;
    splice(@names, 16) if @names > 16;
    eval { server_ctx($s, $_) } for @names;
    $s->{go} = 1;
    ctl_send($t, "ok\n");
  } else { ctl_close($t) }
}
sub session_gone {
  my $t = shift;
  my $s = $t->{s};
  for my $k (keys %conns) { drop($k, 1) if $conns{$k}{s} == $s }
  close $s->{pidfd} if $s->{pidfd};
  session_free($s);
  %$s = ();
}
PERL

# --- DNS: allowed names get their stand-in address, the rest NXDOMAIN ----------------------------
sub dns {
  my $from = recv($ul, my $q, 512, 0);
  return unless defined $from && length($q) >= 17;
  my ($id, $flags, $qd) = unpack("nnn", $q);
  return if $flags & 0x8000 || $qd != 1;
  my ($p, @labels) = (12);
  while ($p < length $q) {
    my $l = ord(substr($q, $p, 1));
    last if $l == 0 || $l > 63;
    push @labels, substr($q, $p + 1, $l);
    $p += 1 + $l;
  }
  return if $p + 5 > length($q) || ord(substr($q, $p, 1)) != 0;
  my ($qtype) = unpack("n", substr($q, $p + 1, 2));
  my $question = substr($q, 12, $p + 5 - 12);
  my $name = lc join(".", @labels);
  my ($rcode, $ans) = (3, "");
  if ($name =~ /^[a-z0-9._-]+$/ && !is_v4($name) && name_allowed($name)) {
    $rcode = 0;
    my $ip = $qtype == 1 ? fake_for($name) : undef;
    $rcode = 2 if $qtype == 1 && !$ip;
    $ans = pack("nnnNn", 0xc00c, 1, 1, 5, 4) . inet_aton($ip) if $ip;
  }
  send($ul, pack("nnnnnn", $id, 0x8180 | ($flags & 0x0100) | $rcode, 1, $ans ? 1 : 0, 0, 0) . $question . $ans, 0, $from);
}

my $tls_compiled;
sub need_tls { $tls_compiled++ or eval "$TLS_PL; 1" or fail("the TLS part does not compile: $@") }
# a connection this proxy terminates itself: the terminator is gone or at its bounds
sub self_terminate { need_tls(); terminate($_[0]) }
if (%secret || $ROLE eq "tls") { eval "$HANDOVER_PL; 1" or fail("the hand-over part does not compile: $@") }
need_tls() if $ROLE eq "tls";
$SIG{PIPE} = "IGNORE";
print "ready $$\n";
open(STDOUT, ">", "/dev/null"); open(STDERR, ">", "/dev/null"); open(STDIN, "<", "/dev/null");
shared_connect() if $ROLE eq "proxy" && %secret;
my $last_check = time();
while (1) {
  my ($rin, $win, %hot) = ("", "");
  vec($rin, fileno($_), 1) = 1 for grep { $_ } ($tl, $pl, $ul, $ctl_listener);
  for my $t (values %ctl) { vec($rin, $t->{fd}, 1) = 1; vec($win, $t->{fd}, 1) = 1 if length $t->{out} }
  for my $x (values %conns) {
    my $st = $x->{state};
    next if $st eq "handed";
    if ($st eq "tls") { $hot{ fileno $x->{c} } = 1 if tls_wants($x, \$rin, \$win); next }
    vec($rin, fileno($x->{c}), 1) = 1 if !$x->{ceof} && length($x->{in}) < $MAXBUF && $st ne "connecting";
    vec($win, fileno($x->{c}), 1) = 1 if length($x->{out}) || $x->{inpipe};
    next unless $x->{up};
    vec($win, fileno($x->{up}), 1) = 1 if $st eq "connecting" || ($st eq "relay" && length $x->{in});
    vec($rin, fileno($x->{up}), 1) = 1 if $st eq "relay" && !$x->{ueof} && length($x->{out}) < $MAXBUF && ($x->{inpipe} // 0) < ($x->{pcap} // 1);
  }
  my $n = select(my $rout = $rin, my $wout = $win, undef, %hot ? 0 : 1);
  my $now = time();
  if ($now != $last_check) {
    $last_check = $now;
    if ($ROLE eq "proxy") { exit 0 if start_of($init) ne $init_start || !-d $dir }
    elsif (%ctl) { $idle_since = $now }
    elsif ($now - $idle_since > 10) { unlink $shared_path; exit 0 } # no proxy has needed it for 10 s
    for my $k (keys %conns) {
      my $x = $conns{$k};
      next unless $x->{deadline} < $now;
      xev($x, "network.denied", $x->{name}, $x->{port}, "tls-timeout") if $x->{state} eq "tls" && !$x->{said} && !$x->{closing};
      drop($k, 1);
    }
  }
  next if $n <= 0 && !%hot;
  ($rout, $wout) = ("", "") if $n < 0; # interrupted: nothing is known to be ready
  dns() if $ul && vec($rout, fileno($ul), 1);
  session_open() if $ctl_listener && vec($rout, fileno($ctl_listener), 1);
  for my $t (values %ctl) {
    ctl_flush($t) if vec($wout, $t->{fd}, 1);
    ctl_read($t) if !$t->{dead} && vec($rout, $t->{fd}, 1);
  }
  for my $l (grep { $_ } $tl, $pl) {
    next unless vec($rout, fileno($l), 1);
    accept(my $c, $l) or next;
    if (keys(%conns) >= 256) { ev("network.denied", "", 0, "too-many-connections"); rst($c); next }
    nonblock($c);
    if ($l == $tl) { transparent_open($c) }
    else { $conns{ fileno($c) } = { c => $c, state => "head", proxy => 1, in => "", out => "", deadline => time() + 10 } }
  }
  for my $k (keys %conns) {
    my $x = $conns{$k} or next;
    next unless $x->{c};
    if ($x->{state} eq "tls") {
      my ($c, $u) = (fileno($x->{c}), $x->{up} ? fileno($x->{up}) : undef);
      next unless $hot{$c} || vec($rout, $c, 1) || vec($wout, $c, 1) || (defined $u && (vec($rout, $u, 1) || vec($wout, $u, 1)));
      $x->{deadline} = $now + 3600 if $x->{said} && !$x->{closing};
      drop($k, 1) unless tls_pump($k);
      next;
    }
    my $up = $x->{up};
    if ($up && $x->{state} eq "connecting") {
      next unless vec($wout, fileno($up), 1);
      on_connected($k);
      next unless $conns{$k};
    }
    my $cr = vec($rout, $k, 1);
    my $cw = vec($wout, $k, 1);
    my $ur = $x->{up} && $x->{state} eq "relay" ? vec($rout, fileno($x->{up}), 1) : 0;
    my $uw = $x->{up} && $x->{state} eq "relay" ? vec($wout, fileno($x->{up}), 1) : 0;
    next unless $cr || $cw || $ur || $uw;
    $x->{deadline} = $now + 3600 if $x->{state} eq "relay";
    drop($k, 0) unless pump($k, $cr, $cw, $ur, $uw);
  }
}
