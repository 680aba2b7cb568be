"""The catalogue's descriptive metadata (``catalog/feeds.toml``): what the policy cannot say about a feed."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_METADATA_FILE = Path(__file__).with_name("feeds.toml")
LANGUAGES = ("zh", "en")


class MetadataError(ValueError):
    """A metadata file that cannot be used; the message says what is wrong and where."""


@dataclass(frozen=True)
class Text:
    zh: str
    en: str


@dataclass(frozen=True)
class FeedMetadata:
    feed: str
    title: Text
    description: Text
    publisher: str  # a key of CatalogMetadata.publishers
    grade: str  # a key of CatalogMetadata.grades
    theme: str
    keywords: tuple[str, ...]
    derived_from: tuple[str, ...]  # source feeds of an aggregate; empty for a source feed


@dataclass(frozen=True)
class Terms:
    tier: str
    category: str  # "unconditional" or "conditional"
    title: Text
    text: Text


@dataclass(frozen=True)
class CatalogMetadata:
    feeds: Mapping[str, FeedMetadata]
    publishers: Mapping[str, Text]
    grades: Mapping[str, Text]
    terms: Mapping[str, Terms]


def _text(value: Any, where: str) -> Text:
    if not isinstance(value, dict) or set(value) != set(LANGUAGES):
        raise MetadataError(f"{where}: must be a table with exactly {' and '.join(LANGUAGES)}")
    if not all(isinstance(v, str) and v.strip() for v in value.values()):
        raise MetadataError(f"{where}: every language needs a non-empty string")
    return Text(value["zh"], value["en"])


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise MetadataError(f"{where}: must be a list of strings")
    return tuple(value)


def parse_metadata(data: Mapping[str, Any]) -> CatalogMetadata:
    publishers = {k: _text(v, f"publishers.{k}") for k, v in data.get("publishers", {}).items()}
    grades = {k: _text(v, f"grades.{k}") for k, v in data.get("grades", {}).items()}
    feeds: dict[str, FeedMetadata] = {}
    for feed, table in data.get("feeds", {}).items():
        where = f"feeds.{feed}"
        known = {"title", "description", "publisher", "grade", "theme", "keywords", "derived_from"}
        unknown = sorted(set(table) - known)
        if unknown:
            raise MetadataError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
        if table.get("publisher") not in publishers:
            raise MetadataError(f"{where}.publisher: must be one of {sorted(publishers)}")
        if table.get("grade") not in grades:
            raise MetadataError(f"{where}.grade: must be one of {sorted(grades)}")
        if not isinstance(table.get("theme"), str):
            raise MetadataError(f"{where}.theme: must be a string")
        feeds[feed] = FeedMetadata(
            feed=feed,
            title=_text(table.get("title"), f"{where}.title"),
            description=_text(table.get("description"), f"{where}.description"),
            publisher=table["publisher"],
            grade=table["grade"],
            theme=table["theme"],
            keywords=_strings(table.get("keywords", []), f"{where}.keywords"),
            derived_from=_strings(table.get("derived_from", []), f"{where}.derived_from"),
        )
    for feed in feeds.values():
        missing = [f for f in feed.derived_from if f not in feeds]
        if missing:
            raise MetadataError(f"feeds.{feed.feed}.derived_from: unknown feed(s) {missing}")
    terms: dict[str, Terms] = {}
    for tier, table in data.get("terms", {}).items():
        category = table.get("category")
        if category not in ("unconditional", "conditional"):
            raise MetadataError(f'terms.{tier}.category: must be "unconditional" or "conditional"')
        terms[tier] = Terms(
            tier,
            category,
            _text(table.get("title"), f"terms.{tier}.title"),
            _text(table.get("text"), f"terms.{tier}.text"),
        )
    return CatalogMetadata(feeds, publishers, grades, terms)


def load_metadata(path: str | Path | None = None) -> CatalogMetadata:
    file = Path(path) if path is not None else DEFAULT_METADATA_FILE
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise MetadataError(f"cannot read catalogue metadata {file.name}: {err}") from None
    return parse_metadata(data)
