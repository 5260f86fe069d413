# The benchmark's applications for the Perl servers (Starman,
# Twiggy::Prefork): field for field the same answers as benchapp.py (same
# status, header fields, Content-Length and body; run.py checks it).
# APP selects one: hello, io, log, big or upload.
use strict;
use warnings;
use Time::HiRes ();

my $hello = "Hello, world!\n";
my $megabyte = "x" x (1024 * 1024);

sub answer {
    my ($body, $type) = @_;
    [200, ["Content-Type" => $type || "text/plain", "Content-Length" => length($body), "X-Pid" => $$], [$body]];
}

my %apps = (
    hello => sub { answer($hello) },
    io => sub { Time::HiRes::sleep(0.005); answer($hello) },
    log => sub {
        my $env = shift;
        # One access-log line per request on stderr (unbuffered in Perl).
        print STDERR ($env->{REMOTE_ADDR} || "-") . " $env->{REQUEST_METHOD} $env->{PATH_INFO} 200\n";
        answer($hello);
    },
    big => sub { answer($megabyte, "application/octet-stream") },
    upload => sub {
        my $env = shift;
        my ($received, $buffer) = (0, "");
        while (my $n = $env->{"psgi.input"}->read($buffer, 65536)) { $received += $n }
        answer("$received\n");
    },
);
$apps{$ENV{APP} || "hello"} or die "benchapp.psgi: no app named $ENV{APP}\n";
