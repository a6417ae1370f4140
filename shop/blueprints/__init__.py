"""The shop's HTTP entry points: one package per feature."""
from ..models.base import MAX_ID

# A record id in a URL: a larger number names nothing, so it is a 404 like any unknown id.
ID = f"int(max={MAX_ID})"
