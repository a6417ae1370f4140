"""What the catalogue pages could cost at the least, served like the shop (bench/floor.py).

- `/`: hello-world, the ceiling of bench/hello.py.
- `/bytes/listing`, `/bytes/product`: the shop's own answers (listing page 50, a product
  page), captured by bench/floor.py and returned from memory: what serving those bytes
  costs, with no template, no database and no hook.
- `/grid`: a plain Flask and Jinja page (bench/templates/floor_grid.html) of 24 product cards
  from a list in memory (layout, header, a link, image, name and price a card, made with
  url_for): the issue's "rendering a 24-card grid from memory alone", on this machine.

FLOOR_DIR names the directory holding listing.html and product.html.
"""
from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

from flask import Flask, render_template

app = Flask(__name__, template_folder="templates")
_DIR = Path(os.environ.get("FLOOR_DIR", "."))
LISTING = (_DIR / "listing.html").read_bytes() if (_DIR / "listing.html").exists() else b""
PRODUCT = (_DIR / "product.html").read_bytes() if (_DIR / "product.html").exists() else b""
CARDS = [{"slug": f"item-{n}", "name": f"Sturdy Canvas Backpack {n}",
          "price": Decimal(n % 300) + Decimal("0.99"), "image": "img/products/bags.svg",
          "in_stock": n % 13 != 0} for n in range(1177, 1201)]


@app.get("/")
def hello() -> str:
    return "Hello, world!"


@app.get("/bytes/listing")
def listing_bytes() -> bytes:
    return LISTING


@app.get("/bytes/product")
def product_bytes() -> bytes:
    return PRODUCT


@app.get("/grid")
def grid() -> str:
    return render_template("floor_grid.html", cards=CARDS)


@app.get("/p/<slug>")
def product(slug: str) -> str:
    return slug
