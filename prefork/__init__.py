"""
twisted-prefork: a preforking WSGI HTTP server for Twisted.

Run it with C{twistd -n prefork --app myproject.wsgi:application}.  The master
(L{prefork.master}) owns the listening sockets and supervises one template
process per generation (L{prefork.template}), which forks the workers
(L{prefork.worker}) that serve the WSGI application (L{prefork.wsgi}).
"""

__version__ = "0.1.0"
