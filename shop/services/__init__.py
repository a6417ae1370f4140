"""The business rules, once: used by the pages, the JSON API and the back office."""
