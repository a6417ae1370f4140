"""Money: Decimal from form to column to JSON string. Rounding lives here and only here."""
from __future__ import annotations

import re
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")
WHOLE = Decimal("1")
ZERO = Decimal("0.00")
# The largest amount the order columns hold (Numeric(12, 2): a line total, an order's total).
MAX_AMOUNT = Decimal("9999999999.99")
# The largest price the shop sells at, in the admin form, the CSV import and any API that sets
# one: what a cart line's seen_price (Numeric(10, 2)) holds. A larger one was saved, then every
# add to a cart failed on MySQL (out of range) with a 500.
MAX_PRICE = Decimal("99999999.99")
# Currencies whose minor unit is not the cent: Stripe's zero-decimal currencies (amounts in
# whole units) and its three-decimal ones (amounts in thousandths, the last digit 0).
ZERO_DECIMAL = {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX",
                "VND", "VUV", "XAF", "XOF", "XPF"}
THREE_DECIMAL = {"BHD", "JOD", "KWD", "OMR", "TND"}
# Currencies kept in whole units that Stripe still counts in hundredths: the Icelandic króna
# has no minor unit (ISO 4217) and card networks take whole krónur only, so Stripe refuses an
# ISK amount that is not a multiple of 100 (100 is 1 kr).
WHOLE_IN_HUNDREDTHS = {"ISK"}
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


# Stripe's amounts have at most eight digits in the currency's minor unit ($999,999.99,
# ¥99,999,999).
CARD_MAXIMUM_MINOR = 99_999_999


def card_maximum(currency: str) -> Decimal:
    """The largest total a card payment (Stripe) can charge in `currency`."""
    return (Decimal(CARD_MAXIMUM_MINOR) / _minor_per_unit(currency)).quantize(
        unit(currency), rounding=ROUND_DOWN)


def unit(currency: str | None) -> Decimal:
    """The smallest amount the shop keeps in `currency`: one whole unit for a zero-decimal
    currency (JPY: prices, totals and charges are whole yen) and for the króna (ISK, see
    WHOLE_IN_HUNDREDTHS), the cent otherwise (three-decimal currencies too: amounts are kept
    to the cent, see `to_minor_units`)."""
    code = currency.upper() if currency else ""
    return WHOLE if code in ZERO_DECIMAL or code in WHOLE_IN_HUNDREDTHS else CENT


def quantize(amount: Decimal | int | str, currency: str | None = None) -> Decimal:
    """Round to the currency's unit (`unit`), half up; to cents without a currency."""
    return Decimal(amount).quantize(unit(currency), rounding=ROUND_HALF_UP)


def fits_unit(amount: Decimal, currency: str | None) -> bool:
    """Whether `amount` needs no rounding in `currency` (no fraction of a yen in JPY)."""
    return Decimal(amount) == quantize(amount, currency)


# Digits and a decimal point, as people write an amount. Decimal also reads "1e3", "1_5" and
# other scripts' digits ("١٠"): a typo there became another price without a word.
_PLAIN_AMOUNT = re.compile(r"\d+(?:\.\d*)?|\.\d+", re.ASCII)


def parse_amount(text: str | None) -> Decimal | None:
    """An amount as typed ("1.999" stays 1.999), or None when it is not one: for checks
    (`fits_unit`) that must see the digits before anything rounds them."""
    if text is None or not str(text).strip():
        return None
    typed = str(text).strip()
    if not _PLAIN_AMOUNT.fullmatch(typed):
        return None
    try:
        value = Decimal(typed)
    except InvalidOperation:
        return None
    if not value.is_finite() or value < 0 or value > MAX_AMOUNT:
        return None
    return value


def parse_money(text: str | None) -> Decimal | None:
    """A shopper's or staff's amount ("12.5", " 12 ") as Decimal in cents, or None when it is
    not one."""
    value = parse_amount(text)
    return None if value is None else quantize(value)


def _minor_per_unit(currency: str) -> int:
    code = currency.upper()
    if code in ZERO_DECIMAL:
        return 1
    return 1000 if code in THREE_DECIMAL else 100


def to_minor_units(amount: Decimal, currency: str) -> int:
    """Stripe's integer amount: cents for USD, whole yen for JPY (rounded half up), fils for
    KWD (amounts are kept to the cent, so the last digit Stripe requires to be 0 is 0),
    hundredths of whole krónur for ISK (a multiple of 100, as Stripe requires)."""
    per_unit = _minor_per_unit(currency)
    return int((quantize(amount, currency) * per_unit).to_integral_value(rounding=ROUND_HALF_UP))


def from_minor_units(amount: int, currency: str) -> Decimal:
    """The inverse of `to_minor_units`."""
    return (Decimal(amount) / _minor_per_unit(currency)).quantize(CENT, rounding=ROUND_HALF_UP)


def to_string(amount: Decimal | None, currency: str | None = None) -> str | None:
    """The API's form: "12.50"; a whole number ("1081") in a zero-decimal currency, as ISO
    4217 and Stripe write yen."""
    return None if amount is None else str(quantize(amount, currency))


# format_money's answers by (amount, currency): a catalogue page formats a few dozen prices,
# and a shop has far fewer distinct prices than pages served. Pure function, bounded.
_FORMATTED: dict[tuple[Decimal, str], str] = {}
_MAX_FORMATTED = 20_000


def format_money(amount: Decimal | None, currency: str = "USD") -> str:
    """For people: "$1,234.50"; "¥1,081" in a zero-decimal currency."""
    if amount is None:
        return ""
    key = (amount, currency)
    try:
        return _FORMATTED[key]
    except (KeyError, TypeError):  # not seen yet, or an unhashable (signalling NaN) amount
        pass
    symbol = SYMBOLS.get(currency.upper())
    text = f"{quantize(amount, currency):,}"
    formatted = f"{symbol}{text}" if symbol else f"{text} {currency.upper()}"
    if type(amount) is Decimal and amount.is_finite():
        if len(_FORMATTED) >= _MAX_FORMATTED:
            _FORMATTED.clear()
        _FORMATTED[key] = formatted
    return formatted
