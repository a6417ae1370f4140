"""The test suite's own speed (nothing here changes what a running shop does).

- Shared URL builders: the suite builds an app for nearly every test (about 2,000 a run), and
  Werkzeug compiles two URL builders for each of the app's 700-odd rules by generating Python
  source and compiling it: about half of `create_app()`'s CPU time (0.21 s -> 0.09 s with
  this, measured 2026-12-07). A builder's code depends only on the rule's text, its parsed
  parts and its defaults, so one compiled builder serves every app of the test process with
  the same rule: the same generated function, bound to each app's own rule. A running shop
  builds its app once per worker and does not use this.
- Shared compiled templates: each app has its own Jinja environment, which lexed, parsed
  and compiled every template it rendered again, test after test (a fifth of the CPU of
  tests/web/test_accounts.py). A bytecode cache in memory, shared by the test process's
  environments, keeps each template's compiled code, checked against its source as Jinja's
  bytecode caches are; every app sets its environment up the same way (create_app).
- Garbage collection: the objects made by imports (the shop, SQLAlchemy, Flask-Admin,
  Hypothesis, Schemathesis: about 150,000) are frozen out of the collector's scans, and the
  young generation is collected less often; each test's apps and pages are garbage in reference
  cycles that the collector still frees. About a sixth of the CPU of app-building tests.
"""
from __future__ import annotations

import gc

from flask import Flask
from jinja2 import BytecodeCache
from werkzeug.routing.rules import Rule

_compile = Rule._compile_builder
_builders: dict = {}


def _shared_builder(self: Rule, append_unknown: bool = True):
    key = (self.rule, self.subdomain, self.host, tuple(self._trace),
           tuple(sorted((name, repr(value)) for name, value in (self.defaults or {}).items())),
           append_unknown)
    builder = _builders.get(key)
    if builder is None:
        builder = _builders[key] = _compile(self, append_unknown)
    return builder


class _SharedTemplates(BytecodeCache):
    def __init__(self) -> None:
        self._codes: dict[str, bytes] = {}

    def load_bytecode(self, bucket) -> None:
        code = self._codes.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)  # ignored unless the source's checksum matches

    def dump_bytecode(self, bucket) -> None:
        self._codes[bucket.key] = bucket.bytecode_to_string()


_templates = _SharedTemplates()
_create_environment = Flask.create_jinja_environment


def _environment_sharing_templates(self: Flask):
    environment = _create_environment(self)
    environment.bytecode_cache = _templates
    return environment


def install() -> None:
    Rule._compile_builder = _shared_builder
    Flask.create_jinja_environment = _environment_sharing_templates
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
