"""
A twistd log observer factory (twistd --logger jsonlog.observer) for the
tests: every event as JSON to the file named by PREFORK_TEST_JSON_LOG, and as
text to standard output, as twistd -n would print it.
"""

import os
import sys

from twisted.logger import jsonFileLogObserver, textFileLogObserver


def observer():
    records = jsonFileLogObserver(open(os.environ["PREFORK_TEST_JSON_LOG"], "a"))
    text = textFileLogObserver(sys.stdout)

    def both(event):
        records(event)
        text(event)

    return both
