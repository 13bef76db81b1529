"""Load a shop's project: config.yaml, campaigns/*.yaml, segments/*.yaml.

`load_project` validates everything it can and raises one `ConfigError`
listing every problem, each with file, line and key path. Files are found
relative to the directory of config.yaml.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .config import Campaign, Config, Paths, Segment
from .errors import ConfigError, Problem
from .yamlfile import KeyPath, YamlDoc, YamlProblems, read_yaml

M = TypeVar("M", bound=BaseModel)

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
    config_file = config_path(path).resolve()
    root = config_file.parent
    problems: list[Problem] = []
    docs: dict[str, YamlDoc] = {}

    config = _load_model(config_file, root, Config, docs, problems)
    paths = config.paths if config else _fallback_paths(docs.get(_shown(config_file, root)))
    campaigns, campaign_files = _load_folder(root / paths.campaigns, root, Campaign, docs, problems)
    segments, segment_files = _load_folder(root / paths.segments, root, Segment, docs, problems)
    if config is None:
        raise ConfigError(problems)
    project = Project(root, config, campaigns, segments, docs, campaign_files, segment_files)
    problems.extend(cross_check(project))
    if problems:
        raise ConfigError(problems)
    return project


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
    folder: Path, root: Path, model: type[M], docs: dict[str, YamlDoc], problems: list[Problem]
) -> tuple[dict[str, M], dict[str, str]]:
    items: dict[str, M] = {}
    files: dict[str, str] = {}
    if not folder.is_dir():
        problems.append(Problem(_shown(folder, root), None, "", "folder not found"))
        return items, files
    for path in sorted(folder.glob("*.y*ml")):
        item = _load_model(path, root, model, docs, problems)
        if item is None:
            continue
        name = item.name
        shown = _shown(path, root)
        if name in items:
            line = docs[shown].line(("name",))
            problems.append(
                Problem(shown, line, "name", f"duplicate name {name!r}: also in {files[name]}")
            )
            continue
        if path.stem != name:
            line = docs[shown].line(("name",))
            problems.append(
                Problem(
                    shown, line, "name", f"name {name!r} must match the file name {path.stem!r}"
                )
            )
        items[name] = item
        files[name] = shown
    return items, files


def cross_check(project: Project) -> list[Problem]:
    """Problems that span files: names that must exist elsewhere."""
    problems: list[Problem] = []
    config_file = next(iter(project.docs), "config.yaml")
    for i, name in enumerate(project.config.campaigns):
        if name not in project.campaigns:
            line = project.where(config_file, ("campaigns", i))
            known = _suggest(name, project.campaigns)
            problems.append(
                Problem(config_file, line, f"campaigns[{i}]", f"no campaign named {name!r}{known}")
            )
    for name, campaign in project.campaigns.items():
        file = project.campaign_files[name]
        if campaign.segment not in project.segments:
            known = _suggest(campaign.segment, project.segments)
            problems.append(
                Problem(
                    file,
                    project.where(file, ("segment",)),
                    "segment",
                    f"no segment named {campaign.segment!r} in {project.config.paths.segments}/{known}",
                )
            )
        for suffix in (".html", ".txt"):
            template = project.templates_dir / f"{campaign.template}{suffix}"
            if not template.is_file():
                problems.append(
                    Problem(
                        file,
                        project.where(file, ("template",)),
                        "template",
                        f"template file {project.config.paths.templates}/{campaign.template}{suffix} not found",
                    )
                )
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


def _suggest(name: str, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known: {', '.join(sorted(known)) or 'none'})"


def validation_problems(
    exc: ValidationError, doc: YamlDoc, model: type[BaseModel]
) -> list[Problem]:
    """Turn pydantic's errors into file:line: key: message problems."""
    problems = []
    for error in exc.errors(include_url=False):
        path = _data_path(doc.data, error["loc"])
        key = _dotted(path)
        message = _message(error, path, doc, model)
        problems.append(Problem(doc.file, doc.line(path), key, message))
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
        ):
            # A missing required key, or a discriminator tag we step over.
            if part == loc[-1]:
                path.append(part)
    return tuple(path)


def _dotted(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(error: Any, path: KeyPath, doc: YamlDoc, model: type[BaseModel]) -> str:
    kind = error["type"]
    found = error.get("input")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, path[:-1], doc)
        close = difflib.get_close_matches(str(path[-1]), allowed, n=1) if allowed else []
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
        return f"type: expected one of {ctx.get('expected_tags', '')}, got {_found(ctx.get('tag'))}"
    if kind == "union_tag_not_found":
        return "required key 'type' is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    if (
        kind.endswith("_type")
        or kind.endswith("_parsing")
        or kind
        in {
            "literal_error",
            "greater_than_equal",
            "less_than_equal",
            "greater_than",
            "string_pattern_mismatch",
            "too_short",
            "string_too_short",
        }
    ):
        message = f"{message[0].lower()}{message[1:]}, got {_found(found)}"
    return message


def _found(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _allowed_keys(model: type[BaseModel], path: KeyPath, doc: YamlDoc) -> list[str]:
    """Keys the model accepts at `path`, for 'did you mean' hints."""
    current: Any = model
    node: Any = doc.data
    for part in path:
        node = node[part] if isinstance(node, (dict, list)) else None
        if isinstance(part, int):
            continue
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
