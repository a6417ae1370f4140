"""The Nu Html Checker finds no errors in the HTML the shop serves: its main pages in a realistic
state, and the pages it answers with when something is wrong (404, a form with errors)."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from .conftest import VNU_JAR

pytestmark = pytest.mark.e2e
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _csrf(context, url: str) -> str:
    match = CSRF.search(context.request.get(url).text())
    assert match, f"no CSRF token on {url}"
    return match.group(1)


def validate(files: list[Path]) -> list[str]:
    """Run the checker once over all files (the JVM is slow to start); one line per error."""
    result = subprocess.run(
        ["java", "-jar", str(VNU_JAR), "--errors-only", "--format", "json", "--stdout",
         "--exit-zero-always", *map(str, files)],
        capture_output=True, text=True, timeout=300)
    assert result.stdout.strip(), f"the Nu Html Checker printed nothing:\n{result.stderr}"
    report = json.loads(result.stdout)
    return [f"{Path(m.get('url', '?')).name}:{m.get('lastLine', '?')}: {m['message']}"
            f"\n      {m.get('extract', '').strip()[:200]!r}"
            for m in report["messages"] if m.get("type") != "info"]


def test_pages_are_valid_html(shop, tour, tmp_path):
    guest = tour.pages["home"][0]
    fetched: dict[str, tuple[int, str]] = {}
    for name, (context, url) in tour.pages.items():
        response = context.request.get(url)
        fetched[name] = (response.status, response.text())

    response = guest.request.get(shop("/p/no-such-product"))
    fetched["not-found"] = (response.status, response.text())
    response = guest.request.get(shop("/products?min_price=cheap&sort=price"))
    fetched["bad-filter"] = (response.status, response.text())
    response = guest.request.get(shop("/account/password/reset/not-a-real-token"))
    fetched["reset-link-invalid"] = (response.status, response.text())
    response = guest.request.post(shop("/checkout"), form={
        "csrf_token": _csrf(guest, shop("/checkout")), "email": "not-an-email", "name": "",
        "line1": "", "city": "", "postal_code": "", "country": "US",
        "shipping_method": "standard", "payment_method": "manual"})
    fetched["checkout-errors"] = (response.status, response.text())
    response = guest.request.post(shop("/account/register"), form={
        "csrf_token": _csrf(guest, shop("/account/register")), "name": "X",
        "email": "x@example", "password": "short", "password_confirm": "other"})
    fetched["register-errors"] = (response.status, response.text())
    response = guest.request.post(shop("/account/login"), form={
        "csrf_token": _csrf(guest, shop("/account/login")), "email": "nobody@example.com",
        "password": "wrong-password-1"})
    fetched["login-failed"] = (response.status, response.text())
    product_page = guest.request.get(tour.pages["product"][1]).text()
    add_form = re.search(r'<form class="add-to-cart".*?</form>', product_page, re.S).group(0)
    response = guest.request.post(shop("/cart/add"), form={
        **dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', add_form)),
        "variant_id": re.search(r'name="variant_id" value="(\d+)" checked', add_form).group(1),
        "quantity": "0"})
    fetched["add-to-cart-refused"] = (response.status, response.text())
    # Text no number field can hold (only a script sends it) is not written back into one.
    response = guest.request.post(shop("/cart/add"), form={
        **dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', add_form)),
        "variant_id": re.search(r'name="variant_id" value="(\d+)" checked', add_form).group(1),
        "quantity": "two"})
    fetched["add-to-cart-no-number"] = (response.status, response.text())
    cart_page = guest.request.get(shop("/cart")).text()
    update = re.search(r'<form class="line-qty" action="([^"]+)"', cart_page).group(1)
    response = guest.request.post(shop(update), form={"csrf_token": _csrf(guest, shop("/cart")),
                                                      "quantity": "two"})
    fetched["cart-quantity-no-number"] = (response.status, response.text())

    expected = {"not-found": 404, "bad-filter": 400, "reset-link-invalid": 400,
                "checkout-errors": 422, "add-to-cart-refused": 422,
                "add-to-cart-no-number": 422, "cart-quantity-no-number": 422,
                "register-errors": 422, "login-failed": 401}
    statuses = {name: status for name, (status, _) in fetched.items()}
    assert statuses == {name: expected.get(name, 200) for name in fetched}

    files = []
    for name, (_, html) in fetched.items():
        assert html.lstrip().lower().startswith("<!doctype html>"), f"{name} is not a page"
        path = tmp_path / f"{name}.html"
        path.write_text(html, encoding="utf-8")
        files.append(path)
    errors = validate(files)
    assert not errors, "the Nu Html Checker found errors:\n" + "\n".join(errors)
