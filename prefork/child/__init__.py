"""
What runs in the template and the workers it forks: loading the
application, the fork bookkeeping, the heartbeat to the master, the exit
guard and fair accept.
"""
