"""Property tests (hypothesis) for Money's one grammar of typed amounts, on every exponent
(0, 2, 3) and in the languages pages are shown in: what Kassa prints a person can type
back exactly, and nothing outside the grammar is ever read as some other amount."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.money import MAX_WHOLE_DIGITS, Money, MoneyError, decimal_separator, exponent

CURRENCIES = {0: ["JPY", "KRW", "CLP"], 2: ["USD", "EUR", "INR"], 3: ["BHD", "KWD", "TND"]}
LOCALES = [None, "en", "de", "hi", "fr", "de_CH"]

currency = st.sampled_from([c for codes in CURRENCIES.values() for c in codes])
locale = st.sampled_from(LOCALES)
minor = st.integers(min_value=0, max_value=10**MAX_WHOLE_DIGITS - 1)


def test_every_exponent_is_covered() -> None:
    for places, codes in CURRENCIES.items():
        assert {exponent(c) for c in codes} == {places}


def test_separators_follow_the_locale() -> None:
    assert [decimal_separator(x) for x in LOCALES] == [".", ".", ",", ".", ",", "."]


@given(minor, currency, locale)
def test_what_we_show_for_typing_reads_back_exactly(amount: int, cur: str, loc: str | None) -> None:
    money = Money(amount, cur)
    typed = money.to_input_string(loc)
    assert Money.parse(typed, cur, loc) == money
    assert Money.parse(f"  {typed}\t", cur, loc) == money
    places = exponent(cur)
    if places:
        whole, fraction = typed.split(decimal_separator(loc))
        assert len(fraction) == places and whole == str(amount // 10**places)
    else:
        assert typed == str(amount)


@given(minor, currency)
def test_the_plain_form_reads_back_exactly(amount: int, cur: str) -> None:
    money = Money(amount, cur)
    assert Money.parse(money.to_major_string(), cur) == money
    assert money.to_major_string() == money.to_input_string()


@given(minor, currency, locale)
def test_format_shows_the_currency_places_and_the_same_digits(
    amount: int, cur: str, loc: str | None
) -> None:
    money = Money(amount, cur)
    shown = money.format(loc or "en_US")
    places = exponent(cur)
    digits = re.sub(r"[^0-9]", "", shown)
    assert digits.lstrip("0") == str(amount).lstrip("0") or (amount == 0 and set(digits) == {"0"})
    if places:
        separator = decimal_separator(loc or "en_US")
        assert re.search(rf"{re.escape(separator)}[0-9]{{{places}}}(?![0-9])", shown), shown


@given(
    st.integers(min_value=0, max_value=10**9),
    st.integers(min_value=0, max_value=999),
    st.integers(min_value=1, max_value=3),
    currency,
    locale,
)
def test_typed_decimals_are_read_at_their_place_never_shifted(
    whole: int, fraction: int, width: int, cur: str, loc: str | None
) -> None:
    """ "0,5" in German is 0.50; more decimals than the currency has is refused."""
    digits = str(fraction).zfill(width)[-width:]
    typed = f"{whole}{decimal_separator(loc)}{digits}"
    places = exponent(cur)
    if width > places:
        with pytest.raises(MoneyError):
            Money.parse(typed, cur, loc)
        return
    money = Money.parse(typed, cur, loc)
    assert money.amount_minor == whole * 10**places + int(digits) * 10 ** (places - width)


@given(st.text(min_size=1, max_size=12), currency, locale)
def test_anything_outside_the_grammar_is_refused(text: str, cur: str, loc: str | None) -> None:
    separator = re.escape(decimal_separator(loc))
    places = exponent(cur)
    grammar = rf"[0-9]{{1,{MAX_WHOLE_DIGITS}}}({separator}[0-9]{{1,{places}}})?"
    grammar = (
        grammar + rf"|{separator}[0-9]{{1,{places}}}"
        if places
        else rf"[0-9]{{1,{MAX_WHOLE_DIGITS}}}"
    )
    stripped = text.strip()
    if re.fullmatch(grammar, stripped, re.ASCII):
        Money.parse(text, cur, loc)  # inside: read (the tests above check the value)
        return
    with pytest.raises(MoneyError):
        Money.parse(text, cur, loc)


@given(
    st.sampled_from([",", "_", "e", "E", "-", "+", " ", "'", "\u00a0", "\u202f"]),
    st.integers(min_value=0, max_value=99),
    st.integers(min_value=0, max_value=99),
    currency,
)
def test_separators_of_another_kind_are_never_dropped(
    other: str, left: int, right: int, cur: str
) -> None:
    """In English (and without a locale) "1,5", "1_0", "1e3" are refused, never 15 or 1000."""
    for loc in (None, "en"):
        with pytest.raises(MoneyError):
            Money.parse(f"{left}{other}{right}", cur, loc)


@given(st.integers(min_value=0, max_value=99), currency, st.sampled_from(LOCALES))
def test_non_ascii_digits_are_refused(value: int, cur: str, loc: str | None) -> None:
    for zero in ("\u0660", "\u06f0", "\u0966", "\uff10", "\u09e6"):
        typed = "".join(chr(ord(zero) + int(d)) for d in str(value))
        with pytest.raises(MoneyError):
            Money.parse(typed, cur, loc)
