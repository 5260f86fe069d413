"""
The request path, as every worker runs it: the HTTP/1.1 channel and site,
the protocol limits, WSGI, the access log and the trusted proxies.  It
imports nothing from the process layers (L{prefork.master},
L{prefork.child}).
"""
