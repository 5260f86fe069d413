# Put on PYTHONPATH, this hides an installed setproctitle, as if the
# [proctitle] extra had not been installed.
raise ImportError("setproctitle is hidden for this test")
