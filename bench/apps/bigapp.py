"""
An application with the weight of a real one: a few large libraries imported
and a lookup table built at import time, as frameworks and apps do.
"""

import decimal
import email.parser
import http.cookies
import json
import sqlite3
import xml.etree.ElementTree

#: Built once at import: what preloading shares between workers.
TABLE = {f"key-{i}": {"id": i, "name": f"item {i}", "price": decimal.Decimal(i) / 100} for i in range(200_000)}


def application(environ, start_response):
    item = TABLE.get(f"key-{len(environ['PATH_INFO'])}")
    body = json.dumps({"id": item["id"], "name": item["name"]}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


assert email.parser and http.cookies and sqlite3 and xml.etree.ElementTree
