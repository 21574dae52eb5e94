"""File names -> ``Image`` records with the upload URL MediaWiki would serve them from.

MediaWiki stores an original under ``/{h[0]}/{h[0:2]}/{Name}`` where ``h`` is the hex MD5 of
the file name (underscores, first letter upper-case) and the name is ``rawurlencode``d. From
wikitext alone we cannot tell a local upload from a Commons file; nearly every file on the
wikis we serve is on Commons, so the URL points there.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import quote

from feedserver.ingest.structured.records import Image

COMMONS_UPLOAD = "https://upload.wikimedia.org/wikipedia/commons"
_FILE_NAME = re.compile(r"^[^#<>\[\]|{}\n]+\.[A-Za-z0-9]{2,5}$")


def file_title(name: str) -> str | None:
    """``montreal skyline.jpg`` -> ``Montreal_skyline.jpg``; None for what is no file name."""
    name = "_".join(name.replace("_", " ").split())
    if not name or not _FILE_NAME.match(name):
        return None
    return name[:1].upper() + name[1:]


def upload_url(title: str) -> str:
    digest = hashlib.md5(title.encode("utf-8"), usedforsecurity=False).hexdigest()
    return f"{COMMONS_UPLOAD}/{digest[0]}/{digest[:2]}/{quote(title, safe='-_.~')}"


def image(name: str, *, caption: str | None = None, alt: str | None = None,
          width: int | None = None) -> Image | None:
    title = file_title(name)
    if title is None:
        return None
    return Image(content_url=upload_url(title), width=width, alternative_text=alt or None,
                 caption=caption or None)
