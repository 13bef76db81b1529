"""Click tracking of an email's links."""

from __future__ import annotations

import re

from engine.deliver.tokens import Purpose, Signer
from engine.render.links import track_links


def test_links_are_rewritten_except_opt_outs_and_the_unsubscribe_link() -> None:
    signer = Signer("s" * 32)
    base = "https://t.example"
    html = (
        '<a class="b" href="https://shop.example/p?a=1&amp;b=2">Shop</a>'
        '<a href="https://shop.example/terms" data-track="no">Terms</a>'
        f'<a href="{base}/u/TOKEN">Unsubscribe</a>'
        '<a href="mailto:help@shop.example">Mail</a>'
        "<p>https://not-a-link.example</p>"
    )
    out = track_links(
        html, lambda url: f"{base}/c/{signer.click_token(7, url)}", keep=(f"{base}/u/",)
    )
    hrefs = re.findall(r'href="([^"]*)"', out)
    assert hrefs[1:] == [
        "https://shop.example/terms",
        f"{base}/u/TOKEN",
        "mailto:help@shop.example",
    ]
    assert "data-track" not in out
    assert hrefs[0].startswith(f"{base}/c/")
    claim = signer.verify(hrefs[0].rsplit("/", 1)[1], Purpose.CLICK)
    assert (claim.message_id, claim.url) == (7, "https://shop.example/p?a=1&b=2")
    assert "<p>https://not-a-link.example</p>" in out
