"""Money: exponents, parsing of typed amounts, formatting for people."""

import pytest

from app.money import Money, MoneyError, exponent, format_minor

CASES = [
    # currency, typed, minor units, plain text back
    ("USD", "12.50", 1250, "12.50"),
    ("USD", "0.01", 1, "0.01"),
    ("EUR", "1234.5", 123450, "1234.50"),
    ("EUR", ".5", 50, "0.50"),
    ("INR", "499", 49900, "499.00"),
    ("JPY", "1800", 1800, "1800"),
    ("KRW", "15000", 15000, "15000"),
    ("BHD", "1.250", 1250, "1.250"),
    ("JOD", "0.005", 5, "0.005"),
    ("KWD", "12.3", 12300, "12.300"),
    ("OMR", "7", 7000, "7.000"),
    ("TND", "2.125", 2125, "2.125"),
]


@pytest.mark.parametrize(("currency", "typed", "minor", "plain"), CASES)
def test_parse_and_round_trip(currency: str, typed: str, minor: int, plain: str) -> None:
    money = Money.parse(typed, currency)
    assert money.amount_minor == minor
    assert money.to_major_string() == plain
    assert Money.parse(money.to_major_string(), currency) == money


@pytest.mark.parametrize(
    ("currency", "places"),
    [
        ("USD", 2),
        ("EUR", 2),
        ("INR", 2),
        ("JPY", 0),
        ("KRW", 0),
        ("VND", 0),
        ("CLP", 0),
        ("BHD", 3),
        ("JOD", 3),
        ("KWD", 3),
        ("OMR", 3),
        ("TND", 3),
        ("IQD", 3),
    ],
)
def test_exponents(currency: str, places: int) -> None:
    assert exponent(currency) == places
    assert exponent(currency.lower()) == places


@pytest.mark.parametrize(
    ("typed", "currency", "message"),
    [
        ("1.5", "JPY", "no minor unit"),
        ("12.345", "USD", "at most 2 decimal places"),
        ("1.0005", "BHD", "at most 3 decimal places"),
        ("", "USD", "Enter an amount"),
        ("abc", "USD", "is not an amount"),
        ("NaN", "USD", "is not an amount"),
        ("Infinity", "EUR", "is not an amount"),
        # Commas are not dropped, nor underscores, exponents, signs or other digits read.
        ("0,5", "EUR", "is not an amount"),
        ("1,5", "EUR", "is not an amount"),
        ("1,234.50", "USD", "is not an amount"),
        ("1_0", "EUR", "is not an amount"),
        ("1e3", "EUR", "is not an amount"),
        ("1E3", "JPY", "is not an amount"),
        ("-5", "USD", "is not an amount"),
        ("+5", "USD", "is not an amount"),
        ("1.2.3", "BHD", "is not an amount"),
        ("5.", "USD", "is not an amount"),
        (".", "USD", "is not an amount"),
        ("1 000", "USD", "is not an amount"),
        ("\u0661\u0662", "USD", "is not an amount"),  # Arabic-Indic 12
        ("\uff11\uff12", "USD", "is not an amount"),  # full-width 12
        ("\u0967.\u0968", "INR", "is not an amount"),  # Devanagari 1.2
        ("1" * 16, "USD", "too large"),
    ],
)
def test_parse_rejects(typed: str, currency: str, message: str) -> None:
    with pytest.raises(MoneyError, match=message):
        Money.parse(typed, currency)


@pytest.mark.parametrize("code", ["US", "USDX", "12A", "XYZ", ""])
def test_unknown_currencies_are_refused(code: str) -> None:
    with pytest.raises(MoneyError):
        Money(100, code)


def test_minor_units_must_be_integers() -> None:
    with pytest.raises(MoneyError):
        Money(12.5, "USD")  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        Money(True, "USD")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("minor", "currency", "shown"),
    [
        (1250, "USD", "$12.50"),
        (1800, "JPY", "¥1,800"),
        (1250, "BHD", "BHD1.250"),
        (49900, "INR", "₹499.00"),
        (123456, "EUR", "€1,234.56"),
        (1000, "IQD", "IQD1.000"),
    ],
)
def test_format_for_people(minor: int, currency: str, shown: str) -> None:
    assert format_minor(minor, currency) == shown


def test_arithmetic_refuses_mixed_currencies() -> None:
    assert Money(100, "USD") + Money(50, "USD") == Money(150, "USD")
    assert Money(100, "USD") * 3 == Money(300, "USD")
    with pytest.raises(MoneyError):
        Money(100, "USD") + Money(100, "EUR")
