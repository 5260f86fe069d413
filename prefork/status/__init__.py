"""
The status the master serves with C{--status}: the collector that reads
the master's view of every worker, the HTML page, its JSON and the
Prometheus metrics.
"""
