"""Money: Decimal from form to column to JSON string. Rounding lives here and only here."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
# Currencies whose minor unit is not the cent: Stripe's zero-decimal currencies (amounts in
# whole units) and its three-decimal ones (amounts in thousandths, the last digit 0).
ZERO_DECIMAL = {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX",
                "VND", "VUV", "XAF", "XOF", "XPF"}
THREE_DECIMAL = {"BHD", "JOD", "KWD", "OMR", "TND"}
SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CAD": "CA$", "AUD": "A$"}
# The least a card payment through Stripe may charge, in the currency's units (Stripe's
# "minimum and maximum charge amounts"); others: 0.50, the usual figure.
CARD_MINIMUM = {"USD": "0.50", "EUR": "0.50", "GBP": "0.30", "CAD": "0.50", "AUD": "0.50",
                "CHF": "0.50", "NZD": "0.50", "SGD": "0.50", "HKD": "4.00", "JPY": "50",
                "DKK": "2.50", "NOK": "3.00", "SEK": "3.00", "MXN": "10", "PLN": "2.00",
                "CZK": "15.00", "HUF": "175.00", "RON": "2.00", "BGN": "1.00", "INR": "0.50",
                "AED": "2.00", "BRL": "0.50", "MYR": "2", "THB": "10"}


def card_minimum(currency: str) -> Decimal:
    """The smallest total a card payment (Stripe) can charge in `currency`."""
    return Decimal(CARD_MINIMUM.get(currency.upper(), "0.50"))


def quantize(amount: Decimal | int | str) -> Decimal:
    """Round to cents, half up."""
    return Decimal(amount).quantize(CENT, rounding=ROUND_HALF_UP)


def parse_money(text: str | None) -> Decimal | None:
    """A shopper's or staff's amount ("12.5", " 12 ") as Decimal, or None when it is not one."""
    if text is None or not str(text).strip():
        return None
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        return None
    if not value.is_finite() or value < 0 or value > Decimal("9999999999.99"):
        return None
    return quantize(value)


def _minor_per_unit(currency: str) -> int:
    code = currency.upper()
    if code in ZERO_DECIMAL:
        return 1
    return 1000 if code in THREE_DECIMAL else 100


def to_minor_units(amount: Decimal, currency: str) -> int:
    """Stripe's integer amount: cents for USD, whole yen for JPY (rounded half up), fils for
    KWD (amounts are kept to the cent, so the last digit Stripe requires to be 0 is 0)."""
    per_unit = _minor_per_unit(currency)
    if per_unit == 1:
        return int(Decimal(amount).quantize(Decimal("1"), rounding=ROUND_HALF_UP))
    return int((quantize(amount) * per_unit).to_integral_value(rounding=ROUND_HALF_UP))


def from_minor_units(amount: int, currency: str) -> Decimal:
    """The inverse of `to_minor_units`."""
    return (Decimal(amount) / _minor_per_unit(currency)).quantize(CENT, rounding=ROUND_HALF_UP)


def to_string(amount: Decimal | None) -> str | None:
    """The API's form: "12.50"."""
    return None if amount is None else str(quantize(amount))


# format_money's answers by (amount, currency): a catalogue page formats a few dozen prices,
# and a shop has far fewer distinct prices than pages served. Pure function, bounded.
_FORMATTED: dict[tuple[Decimal, str], str] = {}
_MAX_FORMATTED = 20_000


def format_money(amount: Decimal | None, currency: str = "USD") -> str:
    """For people: "$1,234.50"."""
    if amount is None:
        return ""
    key = (amount, currency)
    try:
        return _FORMATTED[key]
    except (KeyError, TypeError):  # not seen yet, or an unhashable (signalling NaN) amount
        pass
    symbol = SYMBOLS.get(currency.upper())
    text = f"{quantize(amount):,.2f}"
    formatted = f"{symbol}{text}" if symbol else f"{text} {currency.upper()}"
    if type(amount) is Decimal and amount.is_finite():
        if len(_FORMATTED) >= _MAX_FORMATTED:
            _FORMATTED.clear()
        _FORMATTED[key] = formatted
    return formatted
