"""Load a shop's project: config.yaml, campaigns/*.yaml, segments/*.yaml.

`load_project` validates everything it can and raises one `ConfigError`
listing every problem, each with file, line and key path. Files are found
relative to the directory of config.yaml.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from ..errors import ConfigError, Problem
from .config import Campaign, Config, Paths, Segment
from .yamlfile import KeyPath, YamlDoc, YamlProblems, describe, dotted, read_yaml

M = TypeVar("M", bound=BaseModel)
Named = TypeVar("Named", Campaign, Segment)

ENV_CONFIG = "LIFECYCLE_CONFIG"


@dataclass(frozen=True)
class Secrets:
    """Everything secret, read from the environment only."""

    smtp_password: str | None = None
    secret: str | None = None
    api_key: str | None = None
    database_url: str | None = None
    dashboard_password: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Secrets:
        env = os.environ if environ is None else environ
        return cls(
            smtp_password=env.get("LIFECYCLE_SMTP_PASSWORD") or None,
            secret=env.get("LIFECYCLE_SECRET") or None,
            api_key=env.get("LIFECYCLE_API_KEY") or None,
            database_url=env.get("LIFECYCLE_DATABASE_URL") or None,
            dashboard_password=env.get("LIFECYCLE_DASHBOARD_PASSWORD") or None,
        )


@dataclass(frozen=True)
class Project:
    """A validated shop project: the config and every campaign and segment."""

    root: Path
    config: Config
    campaigns: dict[str, Campaign]
    segments: dict[str, Segment]
    docs: dict[str, YamlDoc] = field(default_factory=dict)
    campaign_files: dict[str, str] = field(default_factory=dict)
    segment_files: dict[str, str] = field(default_factory=dict)

    @property
    def templates_dir(self) -> Path:
        return self.root / self.config.paths.templates

    @property
    def enabled_campaigns(self) -> list[Campaign]:
        return [self.campaigns[name] for name in self.config.campaigns]

    def database_url(self, secrets: Secrets | None = None) -> str:
        """The database URL: LIFECYCLE_DATABASE_URL, else config's, SQLite paths under root."""
        url = (secrets or Secrets.from_env()).database_url or self.config.database
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix:
            path = url[len(prefix) :]
            if path != ":memory:":
                return prefix + str((self.root / path).resolve())
        return url

    def where(self, file: str, path: KeyPath) -> int | None:
        """The line in `file` (as shown in problems) where `path` was written."""
        doc = self.docs.get(file)
        return doc.line(path) if doc else None


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """--config, else LIFECYCLE_CONFIG, else ./config.yaml."""
    return Path(explicit or os.environ.get(ENV_CONFIG) or "config.yaml")


def load_project(path: str | os.PathLike[str] | None = None) -> Project:
    """Load and cross-check everything; raise ConfigError with every problem found."""
    project, problems = load_partial(path)
    if project is None or problems:
        raise ConfigError(problems)
    return project


def load_partial(
    path: str | os.PathLike[str] | None = None,
) -> tuple[Project | None, list[Problem]]:
    """Load what is valid and list every problem, for `lifecycle check`.

    The project (None when config.yaml itself is invalid) holds only the
    campaigns and segments that loaded and whose names resolve, so further
    checks can run on them without repeating these problems.
    """
    config_file = config_path(path).resolve()
    root = config_file.parent
    problems: list[Problem] = []
    docs: dict[str, YamlDoc] = {}

    config = _load_model(config_file, root, Config, docs, problems)
    paths = config.paths if config else _fallback_paths(docs.get(_shown(config_file, root)))
    campaigns = _load_folder(root / paths.campaigns, root, Campaign, docs, problems)
    segments = _load_folder(root / paths.segments, root, Segment, docs, problems)
    refs = _check_references(campaigns, segments, root, paths, docs)
    problems.extend(refs)
    if config is None:
        raw = docs.get(_shown(config_file, root))
        names = raw.data.get("campaigns") if raw and isinstance(raw.data, dict) else None
        if raw is not None and isinstance(names, list):
            problems.extend(_check_enabled(names, set(campaigns.items), campaigns.broken, raw))
        return None, problems
    bad = {p.file for p in refs}
    good = {n: c for n, c in campaigns.items.items() if campaigns.files[n] not in bad}
    project = Project(
        root,
        config,
        good,
        segments.items,
        docs,
        {n: campaigns.files[n] for n in good},
        segments.files,
    )
    problems.extend(
        cross_check(project, broken=campaigns.broken | (set(campaigns.items) - set(good)))
    )
    return project, problems


@dataclass
class _Folder(Generic[Named]):
    """The valid models of one folder, their files, and the names of files that failed."""

    items: dict[str, Named] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)


def _fallback_paths(doc: YamlDoc | None) -> Paths:
    """The folders to check when config.yaml itself is invalid."""
    raw = doc.data.get("paths") if doc and isinstance(doc.data, dict) else None
    try:
        return Paths.model_validate(raw or {})
    except ValidationError:
        return Paths()


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _load_model(
    path: Path, root: Path, model: type[M], docs: dict[str, YamlDoc], problems: list[Problem]
) -> M | None:
    shown = _shown(path, root)
    if not path.is_file():
        problems.append(Problem(shown, None, "", "file not found"))
        return None
    try:
        doc = read_yaml(path, shown)
    except YamlProblems as exc:
        problems.extend(exc.problems)
        return None
    docs[shown] = doc
    if not isinstance(doc.data, dict):
        problems.append(Problem(shown, 1, "", "expected a mapping of keys to values at the top"))
        return None
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        problems.extend(validation_problems(exc, doc, model))
        return None


def _load_folder(
    folder: Path, root: Path, model: type[Named], docs: dict[str, YamlDoc], problems: list[Problem]
) -> _Folder[Named]:
    loaded: _Folder[Named] = _Folder()
    if not folder.is_dir():
        problems.append(Problem(_shown(folder, root), None, "", "folder not found"))
        return loaded
    for path in sorted(folder.glob("*.y*ml")):
        item = _load_model(path, root, model, docs, problems)
        if item is None:
            loaded.broken.add(path.stem)
            continue
        name = item.name
        shown = _shown(path, root)
        if name in loaded.items:
            line = docs[shown].line(("name",))
            problems.append(
                Problem(
                    shown, line, "name", f"duplicate name {name!r}: also in {loaded.files[name]}"
                )
            )
            continue
        if path.stem != name:
            loaded.broken.add(path.stem)  # reported here, not again as a missing name
            line = docs[shown].line(("name",))
            problems.append(
                Problem(
                    shown, line, "name", f"name {name!r} must match the file name {path.stem!r}"
                )
            )
        loaded.items[name] = item
        loaded.files[name] = shown
    return loaded


def _check_references(
    campaigns: _Folder[Campaign],
    segments: _Folder[Segment],
    root: Path,
    paths: Paths,
    docs: dict[str, YamlDoc],
) -> list[Problem]:
    """Each campaign's segment and template files must exist (a broken file is reported once)."""
    problems: list[Problem] = []
    for name, campaign in campaigns.items.items():
        file = campaigns.files[name]
        doc = docs[file]
        if campaign.segment not in segments.items and campaign.segment not in segments.broken:
            known = _suggest(campaign.segment, set(segments.items) | segments.broken)
            problems.append(
                Problem(
                    file,
                    doc.line(("segment",)),
                    "segment",
                    f"no segment named {campaign.segment!r} in {paths.segments}/{known}",
                )
            )
        for suffix in (".html", ".txt"):
            template = root / paths.templates / f"{campaign.template}{suffix}"
            if not template.is_file():
                problems.append(
                    Problem(
                        file,
                        doc.line(("template",)),
                        "template",
                        f"template file {paths.templates}/{campaign.template}{suffix} not found",
                    )
                )
    return problems


def cross_check(project: Project, broken: set[str] | frozenset[str] = frozenset()) -> list[Problem]:
    """Problems that span config.yaml and other files: names that must exist elsewhere.

    `broken` names campaign files that exist but failed to load (already reported).
    """
    config_file = next(iter(project.docs), "config.yaml")
    doc = project.docs.get(config_file, YamlDoc(config_file, None))
    problems = _check_enabled(project.config.campaigns, set(project.campaigns), broken, doc)
    dkim = project.config.sending.dkim
    if dkim is not None and not (project.root / dkim.key_file).is_file():
        problems.append(
            Problem(
                config_file,
                project.where(config_file, ("sending", "dkim", "key_file")),
                "sending.dkim.key_file",
                f"key file {dkim.key_file} not found",
            )
        )
    return problems


def _check_enabled(
    names: list[Any], known: set[str], broken: set[str] | frozenset[str], doc: YamlDoc
) -> list[Problem]:
    """Every campaign config.yaml enables must have a file."""
    problems = []
    for i, name in enumerate(names):
        if isinstance(name, str) and name not in known and name not in broken:
            hint = _suggest(name, known | broken)
            problems.append(
                Problem(
                    doc.file,
                    doc.line(("campaigns", i)),
                    f"campaigns[{i}]",
                    f"no campaign named {name!r}{hint}",
                )
            )
    return problems


def _suggest(name: str, known: Iterable[str]) -> str:
    names = sorted(known)
    close = difflib.get_close_matches(name, names, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known: {', '.join(names) or 'none'})"


def validation_problems(
    exc: ValidationError, doc: YamlDoc, model: type[BaseModel]
) -> list[Problem]:
    """Turn pydantic's errors into one file:line: key: message problem per place.

    The alternatives of a union become one "expected A or B" line, and a key
    reported missing is left out when a misspelled key beside it is the hint.
    """
    by_path: dict[KeyPath, list[Any]] = {}
    for error in exc.errors(include_url=False):
        path = _data_path(doc.data, error["loc"])
        if error["type"] == "union_tag_invalid":
            path = (*path, str(error.get("ctx", {}).get("discriminator", "type")).strip("'"))
        elif error["type"] == "unknown_language":
            path = (*path, error["ctx"]["key"])  # the line of the key, not of the text
        by_path.setdefault(path, []).append(error)
    typos = {
        (*path[:-1], hint)
        for path, errors in by_path.items()
        for error in errors
        if error["type"] == "extra_forbidden"
        for hint in _close(model, path, doc)
    }
    problems = []
    for path, errors in by_path.items():
        if path in typos and all(e["type"] == "missing" for e in errors):
            continue
        for message in _messages(errors, path, doc, model):
            problems.append(Problem(doc.file, doc.line(path), dotted(path), message))
    return problems


def _data_path(data: Any, loc: tuple[Any, ...]) -> KeyPath:
    """The part of pydantic's `loc` that names places in the file (drops union tags)."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        ):
            path.append(part)
            node = node[part]
        elif (
            isinstance(node, dict)
            and part not in node
            and isinstance(part, str)
            and part.isidentifier()
            and part == loc[-1]
        ):
            # A missing required key (a discriminator tag in between is stepped over).
            path.append(part)
    return tuple(path)


# What a value of each pydantic error type should have been, in the marketer's words.
_EXPECTED = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "decimal_type": "a number",
    "decimal_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "date_type": "a date like 2026-11-27",
    "date_parsing": "a date like 2026-11-27",
    "date_from_datetime_parsing": "a date like 2026-11-27",
    "date_from_datetime_inexact": "a date like 2026-11-27",
}


def _messages(errors: list[Any], path: KeyPath, doc: YamlDoc, model: type[BaseModel]) -> list[str]:
    kinds = [e["type"] for e in errors]
    if len(errors) > 1 and all(kind in _EXPECTED for kind in kinds):
        wanted = " or ".join(dict.fromkeys(_EXPECTED[kind] for kind in kinds))
        return [f"expected {wanted}, got {describe(errors[0].get('input'))}"]
    return list(dict.fromkeys(_message(e, path, doc, model) for e in errors))


def _close(model: type[BaseModel], path: KeyPath, doc: YamlDoc) -> list[str]:
    """The allowed key that a misspelled key at `path` most likely meant, if any."""
    allowed = _allowed_keys(model, path[:-1], doc)
    return difflib.get_close_matches(str(path[-1]), allowed, n=1) if allowed else []


def _message(error: Any, path: KeyPath, doc: YamlDoc, model: type[BaseModel]) -> str:
    kind = error["type"]
    found = error.get("input")
    if kind == "extra_forbidden":
        close = _close(model, path, doc)
        allowed = _allowed_keys(model, path[:-1], doc)
        hint = (
            f" (did you mean {close[0]!r}?)"
            if close
            else (f" (expected one of: {', '.join(allowed)})" if allowed else "")
        )
        return f"unknown key{hint}"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        return f"expected one of {ctx.get('expected_tags', '')}, got {describe(ctx.get('tag'))}"
    if kind == "union_tag_not_found":
        return "required key 'type' is missing"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {describe(found)}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if message.startswith("Input should be "):
        wanted = message.removeprefix("Input should be ")
        if wanted.startswith(("greater", "less")):
            wanted = f"a number {wanted}"
        return f"expected {wanted}, got {describe(found)}"
    if kind in {"too_short", "too_long", "string_too_short", "string_too_long"}:
        return f"{message[0].lower()}{message[1:]}, got {describe(found)}"
    return message


def _allowed_keys(model: type[BaseModel], path: KeyPath, doc: YamlDoc) -> list[str]:
    """Keys the model accepts at `path`, for 'did you mean' hints."""
    current: Any = model
    node: Any = doc.data
    for part in path:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
            continue
        node = node.get(part) if isinstance(node, dict) else None
        current = _field_model(current, part, node)
        if current is None:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(f.alias or name for name, f in current.model_fields.items())
    return []


def _field_model(model: Any, key: str, node: Any) -> Any:
    import typing

    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    fields = {f.alias or name: f for name, f in model.model_fields.items()}
    if key not in fields:
        return None
    annotation = fields[key].annotation
    for candidate in _flatten(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            tag = node.get("type") if isinstance(node, dict) else None
            literal = candidate.model_fields.get("type")
            if tag is None or literal is None or tag in typing.get_args(literal.annotation):
                return candidate
    return None


def _flatten(annotation: Any) -> list[Any]:
    import typing

    args = typing.get_args(annotation)
    if not args:
        return [annotation]
    out: list[Any] = []
    for arg in args:
        out.extend(_flatten(arg))
    return out
