"""Point the links of a rendered email at the click tracker.

Every `<a href="http…">` is rewritten in one regex pass; each anchor tag is
parsed once and remembered, since the same tags recur from one email to the next.
"""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Callable

_ANCHOR = re.compile(r"<a\s[^>]*>", re.I)
_HREF = re.compile(r"""(\shref\s*=\s*)(["'])(https?://[^"']*)\2""", re.I)
_NO_TRACK = re.compile(r"""\s+data-track\s*=\s*(["'])no\1""", re.I)


def track_links(html: str, tracked: Callable[[str], str], *, keep: tuple[str, ...] = ()) -> str:
    """Point every `<a href="http…">` at `tracked(original URL)`, in one regex pass.

    Links marked `data-track="no"` keep their URL (the attribute is removed);
    URLs starting with one of `keep` (the unsubscribe link) are left alone.
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
    if _NO_TRACK.search(tag):
        return _NO_TRACK.sub("", tag)
    href = _HREF.search(tag)
    if href is None:
        return tag
    url = htmllib.unescape(href.group(3))
    if url.startswith(keep):
        return tag
    return tag[: href.start(3)], url, tag[href.end(3) :]
