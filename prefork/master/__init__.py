"""
What runs in the master (the twistd process): the supervisor, the
generations it starts, the listening sockets it owns or inherits, and its
conversation with systemd.
"""
