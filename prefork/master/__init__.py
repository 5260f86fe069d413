"""
What runs in the master (the twistd process): the supervisor, the
generations it starts and the records of their workers, the listening
sockets it owns or inherits, and its conversation with systemd.  The
contracts between these parts, and the read-only view the status page gets,
are in L{prefork.master.interfaces}.
"""
