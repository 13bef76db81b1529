"""`survey` in a template: the 0–10 question as signed links to the answer page.

A template writes `{% for n in survey.scores %}<a href="{{ survey.link(n) }}">{{ n }}</a>
{% endfor %}`, or `{{ survey.link(9) }}` for one score, or `{{ survey.url }}` for the page
with no score chosen. Each link is `<tracking base URL>/s/<token>?score=N`, the token
signed for this message (`engine.deliver.tokens`, purpose survey). Following a link
records nothing: the page it opens asks the customer to press a button first, so a
link scanner's fetch of every link is harmless (see `engine.track.surveys`).
"""

from __future__ import annotations

SCORES = tuple(range(11))


class SurveyLinks:
    """The survey links of one email; `url` is the answer page without a score."""

    __slots__ = ("url",)
    scores = SCORES

    def __init__(self, url: str):
        self.url = url

    def link(self, score: int) -> str:
        """The answer page with `score` chosen; ValueError for anything but 0 to 10."""
        if isinstance(score, bool) or not isinstance(score, int) or score not in SCORES:
            raise ValueError(f"survey.link takes a score from 0 to 10, got: {score!r}")
        return f"{self.url}?score={score}"

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"SurveyLinks({self.url!r})"
