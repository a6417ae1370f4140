"""The shop's HTTP entry points: one package per feature."""
