"""``schemas/`` must match the msgspec structs, and real encoded records must validate."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]
import msgspec
import pytest

from feedserver import schemas
from feedserver.models import (
    CC_BY_SA_4,
    Article,
    ArticleBody,
    Editor,
    Event,
    Language,
    Link,
    Namespace,
    PreviousVersion,
    Project,
    Redirect,
    Size,
    Version,
    Visibility,
)
from tests.conftest import ROOT

SCHEMA_DIR = ROOT / "schemas"


def test_committed_schemas_match_structs() -> None:
    stale = schemas.drifted(SCHEMA_DIR)
    assert stale == [], f"schemas/ drifted: {stale}; run `python -m feedserver.schemas`"


class _Indented(msgspec.Struct):
    """First line of a record's docstring
    whose second line is indented in the source."""

    x: int


def test_descriptions_do_not_depend_on_how_python_keeps_docstrings(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Python 3.11 keeps a docstring's indentation, 3.13 strips it at compile time: the
    # committed schemas/ matched one of them only. Both forms must render the same bytes.
    kept = "First line\n    second line, indented.\n    "
    stripped = "First line\nsecond line, indented.\n"
    monkeypatch.setattr(_Indented, "__doc__", kept)
    as_311 = schemas.render(_Indented)
    monkeypatch.setattr(_Indented, "__doc__", stripped)
    assert schemas.render(_Indented) == as_311
    assert json.loads(as_311)["$defs"]["_Indented"]["description"] == (
        "First line\nsecond line, indented.")


def test_registry_names_unique_and_resolvable() -> None:
    names = [name for name, _ in schemas.RECORDS]
    assert len(names) == len(set(names))
    resolved = dict(schemas.records())
    assert resolved["article"] is Article
    assert resolved["redirect"] is Redirect


def test_lazy_entry_of_absent_module_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schemas, "RECORDS", (("ghost", "feedserver.no_such_module:Ghost"),))
    assert schemas.records() == []


def test_output_is_deterministic() -> None:
    text = schemas.render(Article)
    assert text == schemas.render(Article)
    assert text.endswith("}\n")
    doc = json.loads(text)
    assert text == json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert doc["$schema"] == schemas.DIALECT
    assert doc["$ref"] == "#/$defs/Article"
    assert {"Namespace", "Project", "Version", "Editor", "Event"} <= doc["$defs"].keys()


def test_write_then_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "schemas"
    assert schemas.main(["--check", "--dir", str(out)]) == 1
    assert schemas.main(["--dir", str(out)]) == 0
    assert schemas.main(["--check", "--dir", str(out)]) == 0
    assert schemas.main(["--dir", str(out)]) == 0  # nothing to do the second time
    capsys.readouterr()

    (out / "article.json").write_text('{"edited": true}\n')
    (out / "orphan.json").write_text("{}\n")
    assert schemas.main(["--check", "--dir", str(out)]) == 1
    err = capsys.readouterr().err
    assert "article.json" in err and "orphan.json" in err and "redirect.json" not in err

    assert schemas.main(["--dir", str(out)]) == 0
    assert not (out / "orphan.json").exists()
    assert schemas.drifted(out) == []


def _full_article() -> Article:
    when = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    return Article(
        name="Earth",
        identifier=219,
        abstract="Earth is the third planet from the Sun.",
        date_created=datetime(2003, 1, 1, tzinfo=UTC),
        date_modified=when,
        url="https://simple.wikipedia.org/wiki/Earth",
        namespace=Namespace(identifier=0, name="Article"),
        in_language=Language(identifier="en", name="English", direction="ltr"),
        is_part_of=Project(identifier="simplewiki", url="https://simple.wikipedia.org"),
        categories=[Link(name="Category:Planets", url="https://simple.wikipedia.org/wiki/Category:Planets")],
        templates=[Link(name="Template:Infobox planet")],
        redirects=[Link(name="Planet Earth")],
        article_body=ArticleBody(html="<p>Earth</p>", wikitext="'''Earth'''"),
        license=[CC_BY_SA_4],
        version=Version(
            identifier=9_000_001,
            comment="copyedit",
            tags=["mobile edit"],
            is_minor_edit=True,
            editor=Editor(identifier=42, name="Example", edit_count=10, groups=["user"]),
            size=Size(value=1234),
            number_of_characters=1200,
            content_model="wikitext",
            sha1="0" * 40,
        ),
        previous_version=PreviousVersion(identifier=9_000_000, number_of_characters=1100),
        visibility=Visibility(comment=False),
        event=Event(identifier="e-1", type="update", date_published=when, partition=3, offset=7),
    )


def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMA_DIR / f"{name}.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def test_encoded_article_validates() -> None:
    validator = _validator("article")
    full = json.loads(msgspec.json.encode(_full_article()))
    validator.validate(full)
    minimal = Article(
        name="X",
        identifier=1,
        namespace=Namespace(identifier=0),
        is_part_of=Project(identifier="w"),
    )
    validator.validate(json.loads(msgspec.json.encode(minimal)))


@pytest.mark.parametrize(
    "breakage",
    [
        lambda a: a.pop("name"),
        lambda a: a.update(identifier="219"),
        lambda a: a["namespace"].update(identifier=None),
        lambda a: a["event"].update(type="bogus"),
        lambda a: a["version"].update(is_minor_edit="yes"),
        lambda a: a.update(categories=[{"url": "no name"}]),
    ],
)
def test_broken_article_is_rejected(breakage: object) -> None:
    validator = _validator("article")
    doc = json.loads(msgspec.json.encode(_full_article()))
    breakage(doc)  # type: ignore[operator]
    assert not validator.is_valid(doc)


def test_encoded_redirect_validates() -> None:
    redirect = Redirect(name="Planet Earth", namespace=0, target="Earth")
    _validator("redirect").validate(json.loads(msgspec.json.encode(redirect)))
