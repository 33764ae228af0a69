"""Text normalisation for speech: what a transcript says is exactly what the synthesiser is asked to speak.

`normalize_transcript(text)` is the one normalisation of the speech corpus (and a sensible one for scoring):

1. Unicode is folded to ASCII (accents dropped: "café" -> "cafe"; curly quotes and dashes made plain).
2. A few abbreviations are expanded: Mr. Mrs. Ms. Dr. St. Jr. Sr. vs. etc. e.g. i.e. ("mister", "doctor", ...;
   "St." is read as "saint").
3. Numbers are spelled out (American style, no "and": 105 -> "one hundred five"):
   - integers up to the trillions, with or without thousands commas: "1,250" -> "one thousand two hundred fifty";
   - a bare four-digit number from 1100 to 1999 or 2010 to 2099 is read as a year: 1984 -> "nineteen eighty four",
     1900 -> "nineteen hundred", 1905 -> "nineteen oh five" (2000-2009 read as cardinals: "two thousand five");
   - decimals digit by digit after "point": 3.14 -> "three point one four";
   - ordinals: 1st 2nd 3rd 21st 100th -> "first second third twenty first one hundredth";
   - decades/plurals: 1960s -> "nineteen sixties", 80s -> "eighties";
   - a leading zero or more than 15 digits: digit by digit ("007" -> "zero zero seven");
   - times: 10:30 -> "ten thirty", 9:05 -> "nine oh five", 3:00 -> "three o'clock"; ranges: 1990-1995 -> "nineteen
     ninety to nineteen ninety five"; a minus sign before a number: -7 -> "minus seven".
   A number glued to letters ("mp3") is left alone, so the sentence is later dropped.
4. Symbols: "25%" -> "twenty five percent", "$4.50" -> "four dollars fifty cents", "$5 million" ->
   "five million dollars" (also £ pounds, € euros), "&" -> "and", "@" -> "at", "+" -> "plus", "=" -> "equals",
   "#5" -> "number five", "°" -> "degrees".
5. Punctuation is removed (. , ; : ! ? quotes brackets dashes hyphens ellipses); an apostrophe is kept only inside a
   word ("don't", "o'clock"), so quoting apostrophes and plural possessives lose it ("students'" -> "students").
6. Lowercase, whitespace collapsed.

Characters outside [a-z' ] that none of these rules covers (/ * _ < > | ~ digits glued to letters...) are left in
place: `is_clean_transcript` then tells the corpus builder to drop that sentence.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Callable

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
         "seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
            "nine": "ninth", "twelve": "twelfth"}
_CURRENCY = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
             "€": ("euro", "euros", "cent", "cents")}
_ABBREVIATIONS = {"mr": "mister", "mrs": "missus", "ms": "miz", "dr": "doctor", "st": "saint", "jr": "junior",
                  "sr": "senior", "vs": "versus", "etc": "et cetera"}
_SYMBOLS = {"&": " and ", "@": " at ", "+": " plus ", "=": " equals ", "°": " degrees "}
_PUNCTUATION = ".,;:!?\"()[]{}-…«»`´¡¿"
_PAUSES = ".,;:!?"
_CLEAN = re.compile(r"[a-z' ]+")
_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"


def number_to_words(n: int) -> str:
    """Cardinal words for 0 <= n < 10**15 ("one hundred five", "two million three")."""
    if n < 0:
        return "minus " + number_to_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        return _ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + number_to_words(n % 100))
    for value, name in _SCALES:
        if n >= value:
            head, rest = divmod(n, value)
            return number_to_words(head) + " " + name + ("" if rest == 0 else " " + number_to_words(rest))
    raise AssertionError(n)  # unreachable


def ordinal_words(n: int) -> str:
    """Ordinal words: 1 -> "first", 21 -> "twenty first", 100 -> "one hundredth"."""
    words = number_to_words(n).split()
    last = words[-1]
    words[-1] = _ORDINAL.get(last) or (last[:-1] + "ieth" if last.endswith("y") else last + "th")
    return " ".join(words)


def year_words(n: int) -> str:
    """A year read in pairs: 1984 -> "nineteen eighty four", 1900 -> "nineteen hundred", 1905 -> "nineteen oh five"."""
    head, tail = divmod(n, 100)
    if tail == 0:
        return number_to_words(head) + " hundred"
    return number_to_words(head) + " " + ("oh " + _ONES[tail] if tail < 10 else number_to_words(tail))


def _digits(s: str) -> str:
    return " ".join(_ONES[int(d)] for d in s)


def _plural(words: str) -> str:
    head, _, last = words.rpartition(" ")
    last = last[:-1] + "ies" if last.endswith("y") else last + ("es" if last.endswith(("x", "s")) else "s")
    return f"{head} {last}".strip()


def _integer(s: str, as_year: bool = True) -> str:
    s = s.replace(",", "")
    if (len(s) > 1 and s[0] == "0") or len(s) > 15:
        return _digits(s)
    n = int(s)
    if as_year and len(s) == 4 and (1100 <= n <= 1999 or 2010 <= n <= 2099):
        return year_words(n)
    return number_to_words(n)


def _number(s: str, as_year: bool = True) -> str:
    whole, _, frac = s.partition(".")
    return _integer(whole, as_year) + (" point " + _digits(frac) if frac else "")


def _money(m: re.Match) -> str:
    one, many, sub_one, sub_many = _CURRENCY[m.group(1)]
    amount, scale = m.group(2), m.group(3)
    if scale:  # "$5 million", "$2.5 billion"
        return f" {_number(amount, False)} {scale.lower()} {many} "
    whole, _, frac = amount.replace(",", "").partition(".")
    parts = []
    if int(whole) or not frac:
        parts.append(f"{_integer(whole, False)} {one if int(whole) == 1 else many}")
    if frac and len(frac) == 2 and int(frac):
        parts.append(f"{number_to_words(int(frac))} {sub_one if int(frac) == 1 else sub_many}")
    elif frac and int(frac):
        parts = [f"{_number(amount.replace(',', ''), False)} {many}"]
    return " " + " ".join(parts) + " "


def _clock(m: re.Match) -> str:
    hours, minutes = int(m.group(1)), int(m.group(2))
    if minutes == 0:
        return f" {number_to_words(hours)} o'clock "
    return f" {number_to_words(hours)} {'oh ' + _ONES[minutes] if minutes < 10 else number_to_words(minutes)} "


_RULES: list[tuple[re.Pattern, Callable[[re.Match], str] | str]] = [
    (re.compile(r"(?<![\w.])(\d+)\s?-\s?(?=\d)"), lambda m: f" {_integer(m.group(1))} to "),
    (re.compile(r"\s+-+\s+|(?<=\D)--+(?=\D)"), ", "),  # a dash between words is a pause
    (re.compile(r"(?<![\w.:])([012]?\d):([0-5]\d)(?![\w:])"), _clock),
    (re.compile(r"([$£€])\s?(" + _NUM + r")(?:\s+(thousand|million|billion|trillion)\b)?", re.I), _money),
    (re.compile(r"(?<![\w.])(" + _NUM + r")\s?(?:%|\s+per\s?cent\b)", re.I),
     lambda m: f" {_number(m.group(1), False)} percent "),
    (re.compile(r"#\s?(\d+)\b"), lambda m: f" number {_integer(m.group(1), False)} "),
    (re.compile(r"(?<![\w.])(\d+)(st|nd|rd|th)\b", re.I), lambda m: f" {ordinal_words(int(m.group(1)))} "),
    (re.compile(r"(?<![\w.])(\d+)'?s\b"), lambda m: f" {_plural(_integer(m.group(1)))} "),
    (re.compile(r"(?<![\w.])-(" + _NUM + r")(?![\w])"), lambda m: f" minus {_number(m.group(1))} "),
    (re.compile(r"(?<![\w])(" + _NUM + r")(?![\w])"), lambda m: f" {_number(m.group(1))} "),
]


_LATIN = re.compile(r"\b(e\.g|i\.e)\.", re.I)
_ABBREVIATION = re.compile(r"\b(" + "|".join(_ABBREVIATIONS) + r")\.", re.I)
_NEEDS_RULES = re.compile(r"[\d#$£€]|\s-|--")


def _fold_unicode(text: str) -> str:
    """ASCII only, except the symbols spelled out later (£ € °): accents dropped, typographic marks made plain."""
    for fancy, plain in (("\u2018", "'"), ("\u2019", "'"), ("\u201c", '"'), ("\u201d", '"'), ("\u2013", "-"),
                         ("\u2014", "-"), ("\u00a0", " "), ("\u2026", "...")):
        text = text.replace(fancy, plain)
    if text.isascii():
        return text
    return "".join(c if c in "£€°" else unicodedata.normalize("NFKD", c).encode("ascii", "ignore").decode()
                   for c in text)


def _expand(text: str) -> str:
    text = _fold_unicode(text)
    if "." in text:
        text = _LATIN.sub(lambda m: " for example " if m.group(1).lower() == "e.g" else " that is ", text)
        text = _ABBREVIATION.sub(lambda m: " " + _ABBREVIATIONS[m.group(1).lower()] + " ", text)
    if _NEEDS_RULES.search(text):  # a fast path: most prose has no number and no dash
        for pattern, repl in _RULES:
            text = pattern.sub(repl, text)
    for symbol, words in _SYMBOLS.items():
        text = text.replace(symbol, words)
    return text


def _finish(text: str, keep_pauses: bool) -> str:
    text = text.lower()
    if keep_pauses:  # a pause mark stays glued to the preceding word; everything else as in the transcript
        text = re.sub(r"\s*([" + re.escape(_PAUSES) + r"])+", r"\1 ", text)
        strip = "".join(c for c in _PUNCTUATION if c not in _PAUSES)
    else:
        strip = _PUNCTUATION
    text = text.translate({ord(c): " " for c in strip})
    text = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", text)  # apostrophes survive only inside words
    text = " ".join(text.split())
    if keep_pauses:
        text = re.sub(r"(^|\s)[" + re.escape(_PAUSES) + r"]+", r"\1", text).strip()
    return text


def normalize_transcript(text: str) -> str:
    """Normalise `text` for speech (see the module docstring): numbers and symbols spelled out, punctuation and
    quotes removed, lowercase, single spaces. The result is clean when `is_clean_transcript` says so."""
    return _finish(_expand(text), keep_pauses=False)


def spoken_form(text: str) -> str:
    """The same words as `normalize_transcript(text)`, with sentence punctuation (. , ; : ! ?) kept so the
    synthesiser pauses where a reader would."""
    return _finish(_expand(text), keep_pauses=True)


def is_clean_transcript(text: str) -> bool:
    """True when `text` is non-empty and uses only a-z, apostrophe and space."""
    return bool(_CLEAN.fullmatch(text))
