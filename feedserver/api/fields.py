"""Which ``fields`` / ``filters`` paths each response type has (WME: an unknown one is a 422).

A ``PathSet`` is the set of dot paths of a record type (``version.editor.name``) and which of
them are objects or arrays. ``check_paths`` refuses, with a 422 naming it, a field path that is
not one of them (``a.*`` needs ``a`` to be an object) and a filter on an unknown path or on an
object or array (WME filters compare scalars only). Without this, a typo silently selected
nothing (``{}`` for every item) or filtered everything out.

Article paths are ours plus the WME Article fields we do not fill (``main_entity``,
``version.scores``, ...): asking for those is valid WME and simply yields nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
from msgspec import inspect

from feedserver.api.query import Query
from feedserver.errors import InvalidParameter
from feedserver.ingest.structured import StructuredContent
from feedserver.models import Article


class PathSet(msgspec.Struct, frozen=True):
    paths: frozenset[str]
    objects: frozenset[str]  # paths whose value is an object or an array

    @classmethod
    def of(cls, kind: type, extra: Iterable[str] = (), extra_objects: Iterable[str] = ()
           ) -> PathSet:
        paths: set[str] = set(extra)
        objects: set[str] = set(extra_objects)
        _walk(inspect.type_info(kind), "", paths, objects)
        return cls(frozenset(paths), frozenset(objects))

    @classmethod
    def static(cls, *paths: str) -> PathSet:
        """Paths given by hand (``a.b`` makes ``a`` an object)."""
        objects = {p.rsplit(".", 1)[0] for p in paths if "." in p}
        return cls(frozenset(paths) | frozenset(objects), frozenset(objects))


def _struct(info: inspect.Type) -> inspect.StructType | None:
    """The struct inside ``info``: itself, a list of it, or an optional one."""
    if isinstance(info, inspect.StructType):
        return info
    if isinstance(info, inspect.ListType | inspect.SetType | inspect.FrozenSetType):
        return _struct(info.item_type)
    if isinstance(info, inspect.UnionType):
        for member in info.types:
            found = _struct(member)
            if found is not None:
                return found
    return None


def _is_container(info: inspect.Type) -> bool:
    if isinstance(info, inspect.UnionType):
        return any(_is_container(member) for member in info.types)
    return isinstance(info, inspect.ListType | inspect.DictType | inspect.StructType
                      | inspect.SetType | inspect.FrozenSetType)


def _walk(info: inspect.Type, prefix: str, paths: set[str], objects: set[str],
          outer: frozenset[type] = frozenset()) -> None:
    struct = _struct(info)
    if struct is None or struct.cls in outer:  # a recursive record (parts of parts): once
        return
    for field in struct.fields:
        path = prefix + field.encode_name
        paths.add(path)
        if _is_container(field.type):
            objects.add(path)
        _walk(field.type, path + ".", paths, objects, outer | {struct.cls})


def check_paths(query: Query, known: PathSet, *, wildcard_objects: bool = False) -> Query:
    """``query`` when every field and filter path exists in ``known``; else a 422. With
    ``wildcard_objects`` (WME's realtime rule) an object or array field must be asked for as
    ``a.*``."""
    for path in query.fields:
        base = path.removesuffix(".*")
        if base not in known.paths or (path.endswith(".*") and base not in known.objects):
            raise InvalidParameter(f"unknown field {path[:80]!r}", parameter="fields")
        if wildcard_objects and base in known.objects and not path.endswith(".*"):
            raise InvalidParameter(f"field {path[:80]!r} is an object or array: ask for "
                                   f"'{path[:80]}.*'", parameter="fields")
    for f in query.filters:
        if f.field not in known.paths:
            raise InvalidParameter(f"unknown filter field {f.field[:80]!r}",
                                   parameter="filters")
        if f.field in known.objects:
            raise InvalidParameter(f"cannot filter on an object or array: {f.field!r}",
                                   parameter="filters")
    return query


_PROBABILITY = ("prediction", "probability", "probability.true", "probability.false")
_WME_ONLY_OBJECTS = (
    "protection", "main_entity", "additional_entities", "additional_entities.aspects", "image",
    "version.scores", *(f"version.scores.{s}" for s in ("revertrisk", "referencerisk",
                                                        "referenceneed", "damaging",
                                                        "goodfaith")),
    *(f"version.scores.{s}.probability" for s in ("revertrisk", "damaging", "goodfaith")),
    "version.maintenance_tags", "version.diff", "version.event",
)
# WME Article fields (its Go schema) that our records do not carry.
WME_ONLY_ARTICLE_PATHS = (
    *_WME_ONLY_OBJECTS,
    "protection.type", "protection.level", "protection.expiry", "watchers_count",
    "main_entity.identifier", "main_entity.url", "additional_entities.identifier",
    "additional_entities.url", "image.content_url", "image.width", "image.height",
    "image.alternative_text", "image.caption", "version.is_flagged_stable",
    "version.has_tag_needs_citation", "version.is_breaking_news", "version.noindex",
    *(f"version.scores.{s}.{p}" for s in ("revertrisk", "damaging", "goodfaith")
      for p in _PROBABILITY),
    "version.scores.referencerisk.reference_risk_score",
    "version.scores.referenceneed.reference_need_score",
    *(f"version.maintenance_tags.{t}" for t in ("citation_needed_count", "pov_count",
                                                "clarification_needed_count",
                                                "update_count")),
    "version.editor.is_admin", "version.editor.is_patroller",
    "version.editor.has_advanced_rights",
)
ARTICLE_PATHS = PathSet.of(Article, WME_ONLY_ARTICLE_PATHS, _WME_ONLY_OBJECTS)
# Structured Contents: ours plus the WME version fields we do not fill (as for articles).
STRUCTURED_PATHS = PathSet.of(
    StructuredContent, [p for p in WME_ONLY_ARTICLE_PATHS if p.startswith("version.")],
    [p for p in _WME_ONLY_OBJECTS if p.startswith("version.")])
