"""Which template CSS can be inlined ahead, and premailer's failures."""

from __future__ import annotations

import pytest

from engine.errors import RenderError
from engine.render.inlining import inline_css, inlining_notes


def test_dynamic_class_falls_back_too() -> None:
    notes = inlining_notes("x.html", '<p>\n<td class="cell {{ kind }}">x</td>')
    assert notes == [
        "x.html:2: class= is built from a template expression, so its CSS is only known once rendered"
    ]
    assert inlining_notes("x.html", '<td class="cell">{{ kind }}</td>') == []
    # Sibling selectors inside @media or attribute selectors are not a problem.
    css = "<style>@media (max-width: 600px) { a + b { color: red } } a[title~=x] { color: red }</style>"
    assert inlining_notes("x.html", css) == []


def test_a_document_premailer_cannot_take_is_a_render_error() -> None:
    with pytest.raises(RenderError, match="the CSS could not be inlined"):
        inline_css("")
