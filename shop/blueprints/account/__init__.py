"""Accounts: pages in routes.py; the API-token section of the account page in tokens.py."""
from . import tokens  # noqa: F401  (registers its routes on the account blueprint)
