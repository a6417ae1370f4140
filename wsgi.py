"""WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi ...`."""
import sys

try:
    from shop import create_app

    app = create_app()
except RuntimeError as exc:
    # config.SettingError, raised while config.py is read (so not importable here when it is
    # the cause) or by create_app: a setting the shop cannot run with. One line that names it,
    # not a traceback. Exit status 3 is gunicorn's "worker failed to boot", on which its master
    # stops instead of starting the worker again and again; the flask command stops with it.
    if type(exc).__name__ != "SettingError":
        raise
    print(f"Error: {exc}", file=sys.stderr)
    raise SystemExit(3) from None
