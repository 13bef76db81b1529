"""The survey pages a customer sees, in their language (Bengali for `bn*` locales, else English).

`ask_page` is what a survey link opens: the 0–10 question with the chosen score
ticked, an optional comment and a button; nothing is recorded until the button
is pressed. The other pages answer that button: recorded or changed
(`done_page`), too late to change (`too_late_page`), the database busy
(`busy_page`). Every value shown is escaped; scores are written in the reader's digits.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

MAX_COMMENT = 2000
WINDOW_DAYS = 7

_TEXT = {
    "en": {
        "title": "Your opinion of {shop}",
        "question": "How likely are you to recommend {shop} to a friend or relative?",
        "ends": "0 means not at all likely, 10 means extremely likely.",
        "chosen": "You chose {score}. Nothing is saved until you press “{button}”.",
        "comment": "Anything you would like to tell us? (optional)",
        "button": "Send my answer",
        "answered": "Your answer so far is {score}. Sending again changes it, "
        "within {days} days of your first answer.",
        "done_title": "Thank you",
        "recorded": "Your answer is saved: {score} out of 10.",
        "changed": "Your answer is changed: {score} out of 10.",
        "change_later": "You can change it from the link in the email within {days} days "
        "of your first answer.",
        "late_title": "This answer can no longer be changed",
        "late": "Your answer, {score} out of 10, was given more than {days} days ago, "
        "and answers can be changed for {days} days only.",
        "write": "If there is something we should know, please write to {email}.",
        "busy_title": "Please try again",
        "busy": "We could not save your answer just now. Please press the button again "
        "in a minute.",
        "no_score": "Please choose a score from 0 to 10.",
        "bad_score": "The score must be a whole number from 0 to 10; we got: {given}.",
        "many_scores": "Please send one score; we got {count}.",
        "long_comment": "Your comment is {count} characters long; at most {most} fit. "
        "Please shorten it.",
        "bad_form": "The form could not be read. Please send it again from this page.",
        "big_form": "The form is too large to read. Please shorten your comment.",
    },
    "bn": {
        "title": "{shop} সম্পর্কে আপনার মত",
        "question": "বন্ধু বা আত্মীয়কে {shop}-এর কথা বলার সম্ভাবনা কতটা?",
        "ends": "০ মানে একেবারেই না, ১০ মানে অবশ্যই।",
        "chosen": "আপনি {score} বেছে নিয়েছেন। “{button}” চাপার আগে কিছুই জমা হয় না।",
        "comment": "আমাদের কিছু বলতে চান? (ঐচ্ছিক)",
        "button": "উত্তর পাঠান",
        "answered": "এখন পর্যন্ত আপনার উত্তর {score}। প্রথম উত্তরের {days} দিনের মধ্যে "
        "আবার পাঠালে উত্তরটি বদলে যাবে।",
        "done_title": "ধন্যবাদ",
        "recorded": "আপনার উত্তর জমা হয়েছে: ১০-এর মধ্যে {score}।",
        "changed": "আপনার উত্তর বদলানো হয়েছে: ১০-এর মধ্যে {score}।",
        "change_later": "প্রথম উত্তরের {days} দিনের মধ্যে ইমেইলের লিংক থেকে উত্তরটি বদলাতে পারবেন।",
        "late_title": "এই উত্তর আর বদলানো যাবে না",
        "late": "আপনার উত্তর, ১০-এর মধ্যে {score}, {days} দিনের বেশি আগে দেওয়া হয়েছিল; "
        "উত্তর শুধু {days} দিনের মধ্যে বদলানো যায়।",
        "write": "আমাদের কিছু জানানোর থাকলে লিখুন: {email}",
        "busy_title": "আবার চেষ্টা করুন",
        "busy": "এই মুহূর্তে আপনার উত্তর জমা করা গেল না। এক মিনিট পরে আবার বোতামটি চাপুন।",
        "no_score": "০ থেকে ১০-এর মধ্যে একটি স্কোর বেছে নিন।",
        "bad_score": "স্কোর ০ থেকে ১০-এর মধ্যে একটি পূর্ণ সংখ্যা হতে হবে; পেয়েছি: {given}।",
        "many_scores": "একটি স্কোর পাঠান; পেয়েছি {count}টি।",
        "long_comment": "আপনার মন্তব্য {count} অক্ষরের; সর্বোচ্চ {most} অক্ষর লেখা যায়। একটু ছোট করুন।",
        "bad_form": "ফর্মটি পড়া গেল না। এই পাতা থেকে আবার পাঠান।",
        "big_form": "ফর্মটি পড়ার জন্য অনেক বড়। মন্তব্যটি একটু ছোট করুন।",
    },
}

_BENGALI_DIGITS = str.maketrans("0123456789", "০১২৩৪৫৬৭৮৯")

_PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>body{{font-family:system-ui,'Noto Sans Bengali',sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;line-height:1.5}}
fieldset{{border:0;padding:0;margin:0 0 1rem}}legend{{font-weight:bold;margin-bottom:.5rem}}
.scale{{display:flex;flex-wrap:wrap;gap:.3rem}}.scale label{{display:inline-flex;flex-direction:column;align-items:center;min-width:2.2rem}}
.problem{{color:#a11;font-weight:bold}}textarea{{width:100%;font:inherit}}
button{{font-size:1rem;padding:.6rem 1.2rem;margin-top:.8rem}}</style></head>
<body><h1>{title}</h1>{body}</body></html>
"""


@dataclass(frozen=True)
class Asked:
    """Who a survey message went to and what they answered, as the page needs it."""

    locale: str
    answered: int | None = None  # the score on record, if any
    changeable: bool = True  # still within the days an answer may be changed


def language(locale: str) -> str:
    return "bn" if locale.lower().startswith("bn") else "en"


def shown(number: int, lang: str) -> str:
    """`number` in the reader's digits."""
    text = str(number)
    return text.translate(_BENGALI_DIGITS) if lang == "bn" else text


def problem(locale: str, key: str, **values: object) -> str:
    """A problem with what was sent, worded for the page (`no_score`, `bad_score`, …)."""
    lang = language(locale)
    shown_values = {k: shown(v, lang) if isinstance(v, int) else v for k, v in values.items()}
    return _TEXT[lang][key].format(most=shown(MAX_COMMENT, lang), **shown_values)


def ask_page(
    asked: Asked,
    shop: str,
    chosen: int | None,
    *,
    comment: str = "",
    trouble: str | None = None,
) -> str:
    """The question with `chosen` ticked, a comment box and a button that POSTs here."""
    lang = language(asked.locale)
    words = _TEXT[lang]
    parts = []
    if trouble:
        parts.append(f'<p class="problem" role="alert">{escape(trouble)}</p>')
    if asked.answered is not None:
        note = words["answered"].format(score=shown(asked.answered, lang), days=_days(lang))
        parts.append(f"<p>{escape(note)}</p>")
    if chosen is not None:
        note = words["chosen"].format(score=shown(chosen, lang), button=words["button"])
        parts.append(f"<p>{escape(note)}</p>")
    parts.append(_form(words, lang, shop, chosen, comment))
    title = words["title"].format(shop=shop)
    return _PAGE.format(lang=lang, title=escape(title), body="".join(parts))


def _form(words: dict[str, str], lang: str, shop: str, chosen: int | None, comment: str) -> str:
    radios = "".join(
        f'<label><input type="radio" name="score" value="{n}"'
        f"{' required' if n == 0 else ''}{' checked' if n == chosen else ''}>"
        f"<span>{shown(n, lang)}</span></label>"
        for n in range(11)
    )
    question = escape(words["question"].format(shop=shop))
    return (
        '<form method="post">'
        f"<fieldset><legend>{question}</legend>"
        f'<div class="scale">{radios}</div><p>{escape(words["ends"])}</p></fieldset>'
        f'<label for="comment">{escape(words["comment"])}</label>'
        f'<textarea id="comment" name="comment" rows="5" maxlength="{MAX_COMMENT}">'
        f"{escape(comment)}</textarea>"
        f'<button type="submit">{escape(words["button"])}</button></form>'
    )


def done_page(locale: str, shop: str, score: int, *, changed: bool) -> str:
    """The answer to the button: the score saved (or changed), and how long it may change."""
    lang = language(locale)
    words = _TEXT[lang]
    said = words["changed" if changed else "recorded"].format(score=shown(score, lang))
    later = words["change_later"].format(days=_days(lang))
    body = f"<p>{escape(said)}</p><p>{escape(later)}</p>"
    return _PAGE.format(lang=lang, title=escape(words["done_title"]), body=body)


def too_late_page(locale: str, score: int, support_email: str | None) -> str:
    """The answer to a change sent after the change window: the answer stays as it was."""
    lang = language(locale)
    words = _TEXT[lang]
    said = words["late"].format(score=shown(score, lang), days=_days(lang))
    body = f"<p>{escape(said)}</p>"
    if support_email:
        body += f"<p>{escape(words['write'].format(email=support_email))}</p>"
    return _PAGE.format(lang=lang, title=escape(words["late_title"]), body=body)


def busy_page(locale: str) -> str:
    """The answer when the database could not take the answer: nothing was saved."""
    words = _TEXT[language(locale)]
    body = f"<p>{escape(words['busy'])}</p>"
    return _PAGE.format(lang=language(locale), title=escape(words["busy_title"]), body=body)


def _days(lang: str) -> str:
    return shown(WINDOW_DAYS, lang)
