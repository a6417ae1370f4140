"""bench/floor_app.py, the floor bench/floor.py measures: it answers what it says it does."""
from __future__ import annotations

import importlib
import re
import sys


def test_the_floor_app_returns_the_captured_bytes_and_a_24_card_grid(tmp_path, monkeypatch):
    (tmp_path / "listing.html").write_bytes(b"<p>listing</p>")
    (tmp_path / "product.html").write_bytes(b"<p>product</p>")
    monkeypatch.setenv("FLOOR_DIR", str(tmp_path))
    sys.modules.pop("bench.floor_app", None)
    floor = importlib.import_module("bench.floor_app")
    client = floor.app.test_client()
    assert client.get("/").get_data() == b"Hello, world!"
    assert client.get("/bytes/listing").get_data() == b"<p>listing</p>"
    assert client.get("/bytes/product").get_data() == b"<p>product</p>"
    grid = client.get("/grid").get_data(as_text=True)
    assert len(re.findall(r'<li class="card"><a href="/p/item-\d+">', grid)) == 24
    assert "$277.99" in grid and "$0.99" in grid  # items 1177 and 1200
    sys.modules.pop("bench.floor_app", None)
