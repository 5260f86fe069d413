"""
The status the master serves with C{--status}: the collector that keeps
every worker's last report, the HTML page, its JSON and the Prometheus
metrics.
"""
