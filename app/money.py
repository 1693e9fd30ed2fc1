"""Money as integer minor units plus an ISO 4217 currency.

Amounts never travel as floats: they are parsed from text with Decimal, checked
against the currency's exponent, and stored as whole minor units.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from babel.numbers import format_currency, get_decimal_symbol

# ISO 4217 exponents that differ from the usual 2. Gateways agree with ISO for
# these (Stripe's zero-decimal list; Razorpay follows ISO as well).
ZERO_DECIMAL = frozenset(
    [
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "ISK",
        "JPY",
        "KMF",
        "KRW",
        "PYG",
        "RWF",
        "UGX",
        "UYI",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    ]
)
THREE_DECIMAL = frozenset(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"])

# Currencies we accept at all: ISO codes Babel knows, so formatting works.
_KNOWN: frozenset[str] | None = None


def _known_currencies() -> frozenset[str]:
    global _KNOWN
    if _KNOWN is None:
        from babel.core import get_global

        _KNOWN = frozenset(get_global("currency_fractions").keys()) | frozenset(
            __import__("babel.numbers", fromlist=["list_currencies"]).list_currencies()
        )
    return _KNOWN


def N_(message: str) -> str:
    """Marks a message for the catalogs (pybabel's N_ keyword); translated where shown."""
    return message


class MoneyError(ValueError):
    """An amount or currency that cannot be represented.

    `template` and `params` let a page say it in the reader's language
    (`gettext(exc.template, **exc.params)`); str() is the English sentence."""

    def __init__(self, template: str, **params: object) -> None:
        self.template = template
        self.params = params
        super().__init__(template % params if params else template)


# Larger than any real payment, and within a signed 64-bit count of minor units.
MAX_WHOLE_DIGITS = 15


@lru_cache(maxsize=64)
def decimal_separator(locale: str | None) -> str:
    """The decimal separator people type in `locale` ("." without one, or for English,
    "," for German); Latin digits' symbols, since amounts are typed in ASCII digits."""
    if not locale:
        return "."
    try:
        symbol = get_decimal_symbol(locale, numbering_system="latn")
    except (ValueError, LookupError):
        return "."
    # The separator must not be a digit or a space (the grammar strips outer spaces).
    return symbol if len(symbol) == 1 and not symbol.isdigit() and not symbol.isspace() else "."


@lru_cache(maxsize=8)
def _amount_re(separator: str) -> re.Pattern[str]:
    sep = re.escape(separator)
    return re.compile(rf"(?:([0-9]+)(?:{sep}([0-9]+))?|{sep}([0-9]+))", re.ASCII)


def normalize_currency(code: str) -> str:
    """Upper-case and check an ISO 4217 code."""
    if not isinstance(code, str) or len(code.strip()) != 3 or not code.strip().isalpha():
        raise MoneyError(
            N_("%(code)s is not a three-letter ISO 4217 currency code"), code=repr(code)
        )
    upper = code.strip().upper()
    if upper not in _known_currencies():
        raise MoneyError(N_("%(code)s is not a known ISO 4217 currency"), code=upper)
    return upper


def exponent(currency: str) -> int:
    """Number of decimal places of the currency's minor unit."""
    cur = normalize_currency(currency)
    if cur in ZERO_DECIMAL:
        return 0
    if cur in THREE_DECIMAL:
        return 3
    return 2


@dataclass(frozen=True, slots=True)
class Money:
    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount_minor, bool) or not isinstance(self.amount_minor, int):
            raise MoneyError("amount_minor must be an integer number of minor units")
        object.__setattr__(self, "currency", normalize_currency(self.currency))

    @classmethod
    def parse(cls, text: str, currency: str, locale: str | None = None) -> Money:
        """Parse a typed amount such as "12.50" (or "12,50" for `locale="de"`) into minor units.

        One strict grammar: ASCII digits, at most one decimal separator (the locale's, or
        "." without a locale), at most the currency's exponent of decimals after it. No
        signs, exponents, group separators, underscores or non-ASCII digits: "0,5" is
        refused in English and read as 0.50 in German, never as 5.00. More decimals than
        the currency has is an error, never a rounding.
        """
        cur = normalize_currency(currency)
        places = exponent(cur)
        separator = decimal_separator(locale)
        cleaned = str(text).strip() if text is not None else ""
        if not cleaned:
            raise MoneyError(N_("Enter an amount"))
        match = _amount_re(separator).fullmatch(cleaned)
        if match is None:
            example = "1250" if places == 0 else "12" + separator + "5" + "0" * (places - 1)
            if places:
                raise MoneyError(
                    N_(
                        "%(text)s is not an amount: use digits and at most one %(separator)s "
                        "for decimals, e.g. %(example)s"
                    ),
                    text=repr(text),
                    separator=repr(separator),
                    example=example,
                )
            raise MoneyError(
                N_("%(text)s is not an amount: use digits, e.g. %(example)s"),
                text=repr(text),
                example=example,
            )
        whole, fraction = match.group(1) or "", match.group(2)
        if match.group(3) is not None:  # ".5"
            fraction = match.group(3)
        if fraction is not None and places == 0:
            raise MoneyError(
                N_("%(currency)s has no minor unit: enter a whole amount"), currency=cur
            )
        fraction = fraction or ""
        if len(fraction) > places:
            raise MoneyError(
                N_("%(currency)s allows at most %(places)d decimal places"),
                currency=cur,
                places=places,
            )
        if len(whole.lstrip("0")) > MAX_WHOLE_DIGITS:
            raise MoneyError(N_("%(text)s is too large an amount"), text=repr(text))
        return cls(int((whole or "0") + fraction.ljust(places, "0")), cur)

    @property
    def decimal(self) -> Decimal:
        return Decimal(self.amount_minor).scaleb(-exponent(self.currency))

    def to_major_string(self) -> str:
        """Plain decimal text with exactly the currency's places ("12.50", "1000", "1.250")."""
        places = exponent(self.currency)
        return f"{self.decimal:.{places}f}"

    def to_input_string(self, locale: str | None = None) -> str:
        """What a person types for this amount in `locale` (no grouping): "12.50" in
        English, "12,50" in German; `parse(..., locale)` reads it back exactly."""
        text = major_text(self.amount_minor, self.currency)
        return text.replace(".", decimal_separator(locale)) if exponent(self.currency) else text

    def format(self, locale: str = "en_US") -> str:
        """For people: "$12.50", "¥1,000", "BHD 1.250"."""
        # CLDR's digits differ from ISO for a few currencies (IQD), so the number
        # of places shown is ours, not Babel's.
        places = exponent(self.currency)
        pattern = "¤#,##0" + ("." + "0" * places if places else "")
        return format_currency(
            self.decimal, self.currency, format=pattern, locale=locale, currency_digits=False
        )

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def __mul__(self, factor: int) -> Money:
        if not isinstance(factor, int) or isinstance(factor, bool):
            raise MoneyError("Money can only be multiplied by a whole number")
        return Money(self.amount_minor * factor, self.currency)

    def _same(self, other: Money) -> None:
        if self.currency != other.currency:
            raise MoneyError(f"cannot mix {self.currency} and {other.currency}")

    def __str__(self) -> str:
        return f"{self.to_major_string()} {self.currency}"


def format_minor(amount_minor: int, currency: str, locale: str = "en_US") -> str:
    """Template helper: format integer minor units for people."""
    return Money(amount_minor, currency).format(locale)


_places = lru_cache(maxsize=256)(exponent)


def major_text(amount_minor: int, currency: str) -> str:
    """Minor units as plain major-unit text ("12.50", "1800", "1.250"), integer maths only
    (the CSV export formats millions of amounts; Money objects cost ten times more)."""
    places = _places(currency)
    if not places:
        return str(amount_minor)
    whole, part = divmod(abs(amount_minor), 10**places)
    return f"{'-' if amount_minor < 0 else ''}{whole}.{part:0{places}d}"
