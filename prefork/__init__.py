"""
twisted-prefork: a preforking WSGI HTTP server for Twisted.

Run it with C{twistd -n prefork --app myproject.wsgi:application}.  The
package is laid out by the process that runs each part:

  - L{prefork.master}: the twistd process, which owns the listening sockets
    and supervises one template per generation;
  - L{prefork.child}: the template, which imports the application once and
    forks the workers, and the workers themselves;
  - L{prefork.web}: the request path every worker runs (HTTP/1.1, WSGI);
  - L{prefork.status}: the status page, JSON and metrics the master serves.

What they share sits at the top: the configuration (L{prefork.config}), the
pipe messages (L{prefork.messages}) and the process titles
(L{prefork.proctitle}).
"""

__version__ = "0.1.0"
