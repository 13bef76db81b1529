"""Point the links of a rendered email at the click tracker, and refuse unsafe ones.

Every `<a href="http…">` is rewritten in one regex pass; each anchor tag is
parsed once and remembered, since the same tags recur from one email to the next.
A link goes out only as http, https, mailto or tel (or a `#fragment` within the
email): `javascript:`, `data:`, scheme-relative `//host` and relative links are
refused (`unsafe_links` lists them for `lifecycle check`; sending fails the
email with an `UnsafeLink`).
"""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Callable

from ..errors import RenderError

_ANCHOR = re.compile(r"<a\s[^>]*>", re.I)
_HREF = re.compile(r"""(\shref\s*=\s*)(["'])(https?://[^"']*)\2""", re.I)
_ANY_HREF = re.compile(r"""\shref\s*=\s*("[^"]*"|'[^']*'|[^\s"'>]+)""", re.I)
_TAG = re.compile(r"<[a-zA-Z][^>]*>")
_LINK_ATTR = re.compile(
    r"""\s(?:href|action|formaction|xlink:href)\s*=\s*("[^"]*"|'[^']*'|[^\s"'>]+)""", re.I
)
# What browsers drop from a URL before reading its scheme.
_IGNORED = re.compile(r"[\t\n\r]|^[\x00-\x20]+|[\x00-\x20]+$")
SAFE_SCHEMES = ("http://", "https://", "mailto:", "tel:")
_NO_TRACK = re.compile(r"""\s+data-track\s*=\s*(["'])no\1""", re.I)


class UnsafeLink(RenderError):
    """An email links somewhere other than http, https, mailto or tel."""


def is_safe_link(url: str) -> bool:
    """Whether `url` (as written in an attribute, entities and all) may go out."""
    plain = _IGNORED.sub("", htmllib.unescape(url)).lower()
    return plain.startswith(SAFE_SCHEMES) or (plain.startswith("#") and len(plain) > 1)


def unsafe_links(html: str) -> list[str]:
    """Every link target of `html` (href, action, formaction) that may not go out."""
    found = []
    for tag in _TAG.finditer(html):
        for m in _LINK_ATTR.finditer(tag.group(0)):
            value = m.group(1)
            url = value[1:-1] if value[:1] in "\"'" else value
            if not is_safe_link(url):
                found.append(htmllib.unescape(url))
    return list(dict.fromkeys(found))


def track_links(html: str, tracked: Callable[[str], str], *, keep: tuple[str, ...] = ()) -> str:
    """Point every `<a href="http…">` at `tracked(original URL)`, in one regex pass.

    Links marked `data-track="no"` keep their URL (the attribute is removed);
    URLs starting with one of `keep` (the unsubscribe link) are left alone.
    Raises UnsafeLink for an anchor whose link is not http, https, mailto or tel.
    """

    links: dict[str, str] = {}  # URL → its tracked link, escaped, for this email

    def anchor(m: re.Match[str]) -> str:
        tag = m.group(0)
        key = (tag, keep)
        found = _TAGS.get(key)
        if found is None:
            found = _parse_anchor(tag, keep)
            if len(_TAGS) >= _TAGS_MAX:
                _TAGS.clear()
            _TAGS[key] = found
        if isinstance(found, str):
            return found
        head, url, tail = found
        new = links.get(url)
        if new is None:
            new = links[url] = htmllib.escape(tracked(url), quote=True)
        return f"{head}{new}{tail}"

    return _ANCHOR.sub(anchor, html)


# An email's anchors repeat from one email to the next: each tag is parsed once.
_TAGS: dict[tuple[str, tuple[str, ...]], str | tuple[str, str, str]] = {}
_TAGS_MAX = 4096


def _parse_anchor(tag: str, keep: tuple[str, ...]) -> str | tuple[str, str, str]:
    """The tag as it is to be sent, or (before the URL, the URL unescaped, after it)."""
    for m in _ANY_HREF.finditer(tag):
        value = m.group(1)
        url = value[1:-1] if value[:1] in "\"'" else value
        if not is_safe_link(url):
            raise UnsafeLink(
                f"the link {htmllib.unescape(url)!r} may not go out: "
                "only http, https, mailto and tel links are allowed"
            )
    if _NO_TRACK.search(tag):
        return _NO_TRACK.sub("", tag)
    href = _HREF.search(tag)
    if href is None:
        return tag
    url = htmllib.unescape(href.group(3))
    if url.startswith(keep):
        return tag
    return tag[: href.start(3)], url, tag[href.end(3) :]
