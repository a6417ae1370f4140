"""An app module that fails to load a moment after it starts loading, in every worker alike
(tests/web/test_gunicorn_conf.py: several workers failing to boot at about the same time)."""
import time

time.sleep(1.5)
raise ImportError("this app cannot be loaded (a test of gunicorn's boot failure)")
