# The benchmark's applications for Starman, the same as benchapp.py.
# APP selects one: hello, io, big or upload.
use strict;
use warnings;
use Time::HiRes ();

my $hello = "Hello, world!\n";
my $megabyte = "x" x (1024 * 1024);
my %apps = (
    hello => sub { [200, ["Content-Type" => "text/plain", "X-Pid" => $$], [$hello]] },
    io => sub { Time::HiRes::sleep(0.005); [200, ["Content-Type" => "text/plain", "X-Pid" => $$], [$hello]] },
    big => sub { [200, ["Content-Type" => "application/octet-stream", "X-Pid" => $$], [$megabyte]] },
    upload => sub {
        my $env = shift;
        my ($received, $buffer) = (0, "");
        while (my $n = $env->{"psgi.input"}->read($buffer, 65536)) { $received += $n }
        [200, ["Content-Type" => "text/plain", "X-Pid" => $$], ["$received\n"]];
    },
);
$apps{$ENV{APP} || "hello"};
