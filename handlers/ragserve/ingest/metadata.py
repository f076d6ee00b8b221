"""Page metadata a reader uses to tell pages apart: publication date, authors, tags; and dates as words.

Public names: page_metadata, date_terms.
Users often describe a page instead of naming it ("Meta's April 2024 open models", "the December
2023 sparse model"): the date and the makers identify it. Main-content extraction drops the byline
block, so these are read from the HTML first: standard meta tags (`article:published_time`,
`author`, `keywords`, `article:tag`), then `<time datetime>`, then the visible "Published <date>",
"By a, b" and "Tags: x, y" lines that blogs print.
"""

from __future__ import annotations

import re
from datetime import date, datetime

from bs4 import BeautifulSoup

MONTHS = [
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
]  # fmt: skip
SEASONS = {12: "winter", 1: "winter", 2: "winter", 3: "spring", 4: "spring", 5: "spring",
           6: "summer", 7: "summer", 8: "summer", 9: "autumn", 10: "autumn", 11: "autumn"}  # fmt: skip
PUBLISHED = re.compile(r"^(?:Published|Posted)\s*(?:on\s*)?:?\s*([A-Z][a-z]+\.? \d{1,2},? \d{4}|\d{4}-\d{2}-\d{2})")
LABELLED_TAGS = ["p", "div", "span", "li", "time", "dd"]
MAX_LABELLED_CHARS = 400  # a byline is short; longer text starting with "By" is prose
MAX_ITEM_WORDS = 4  # a name or a tag


def page_metadata(soup: BeautifulSoup) -> dict[str, str]:
    """{'published': 'YYYY-MM-DD', 'authors': 'a, b', 'tags': 'x, y'}, each only when the page states it."""
    found = {
        "published": _published(soup),
        "authors": _meta(soup, "author") or _listed(_labelled(soup, "By")),
        "tags": _meta(soup, "keywords") or _meta_all(soup, "article:tag") or _listed(_labelled(soup, "Tags:")),
    }
    return {name: value for name, value in found.items() if value}


def date_terms(iso_date: str) -> str:
    """The ways people write a date's period: '2023-12-11' -> 'December 2023, Dec 2023, winter 2023, ...'.

    So "April 2024", "spring 2024", "mid-2024" and "2024-04-18" can all meet the page's date in BM25.
    """
    try:
        day = date.fromisoformat(iso_date)
    except ValueError:
        return ""
    month = MONTHS[day.month - 1]
    part = "early" if day.month <= 4 else "mid" if day.month <= 8 else "late"
    seasons = [SEASONS[day.month]] + (["fall"] if SEASONS[day.month] == "autumn" else [])
    terms = [iso_date, f"{month} {day.year}", f"{month[:3]} {day.year}", f"{part} {day.year}", f"{part}-{day.year}"]
    terms += [f"{season} {day.year}" for season in seasons] + [f"q{(day.month - 1) // 3 + 1} {day.year}"]
    return ", ".join(terms)


def _published(soup: BeautifulSoup) -> str:
    time_tag = soup.find("time", attrs={"datetime": True})
    visible = PUBLISHED.match(
        _labelled(soup, "Published", keep_label=True) or _labelled(soup, "Posted", keep_label=True)
    )
    for candidate in (
        _meta(soup, "article:published_time"),
        _meta(soup, "date"),
        str(time_tag.get("datetime", "")) if time_tag else "",
        visible[1] if visible else "",
    ):
        if parsed := _iso(candidate):
            return parsed
    return ""


def _iso(value: str) -> str:
    """YYYY-MM-DD from an ISO timestamp or 'Month D, YYYY'; '' when it is neither."""
    value = value.strip()
    if re.match(r"\d{4}-\d{2}-\d{2}", value):
        return value[:10]
    for pattern in ("%B %d, %Y", "%B %d %Y", "%b %d, %Y", "%b. %d, %Y"):
        try:
            return datetime.strptime(value, pattern).date().isoformat()
        except ValueError:
            continue
    return ""


def _meta(soup: BeautifulSoup, name: str) -> str:
    tag = soup.find("meta", attrs={"name": name}) or soup.find("meta", attrs={"property": name})
    return str(tag.get("content", "")).strip() if tag else ""


def _meta_all(soup: BeautifulSoup, name: str) -> str:
    return ", ".join(str(t.get("content", "")).strip() for t in soup.find_all("meta", attrs={"property": name}))


def _labelled(soup: BeautifulSoup, label: str, keep_label: bool = False) -> str:
    """The text after `label` in the shortest element that starts with it ('By a, b' -> 'a, b')."""
    texts = (tag.get_text(" ", strip=True) for tag in soup.find_all(LABELLED_TAGS))
    matches = [t for t in texts if re.match(rf"{re.escape(label)}(\s|$)", t) and len(t) < MAX_LABELLED_CHARS]
    if not matches:
        return ""
    text = min(matches, key=len)
    return text if keep_label else text[len(label) :].strip()


def _listed(text: str) -> str:
    """'a , b,c' -> 'a, b, c' (the HTML often puts each name in its own link); '' for prose.

    A byline or tag list is short items; "By the end of 2023 we..." is a sentence, not authors.
    """
    items = [item.strip() for item in text.split(",") if item.strip()]
    if any(len(item.split()) > MAX_ITEM_WORDS or item.endswith((".", "!", "?")) for item in items):
        return ""
    return ", ".join(items)
