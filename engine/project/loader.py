"""Load a shop's project: config.yaml, campaigns/*.yaml, segments/*.yaml, tiers.yaml.

`load_project` validates everything it can and raises one `ConfigError`
listing every problem, each with file, line and key path. Files are found
relative to the directory of config.yaml. The templates are read into the
project (`templatesources`): what renders is what was loaded and checked. A value a model refuses is worded by
`problems`; a name or file that points nowhere is found by `references`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from pydantic import BaseModel, ValidationError

from ..errors import ConfigError, Problem
from .campaigns import Campaign, TierChanged
from .config import Config, Paths, Segment
from .problems import validation_problems
from .references import check_enabled, check_references
from .rewards import Tiers
from .templatesources import TemplateSources, TooManyTemplates, read_template_sources
from .yamlfile import KeyPath, YamlDoc, YamlProblems, dotted, read_yaml

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
    woocommerce_secret: str | None = None  # the secret of the shop's WooCommerce webhooks
    shopify_secret: str | None = None  # the secret Shopify signs the shop's webhooks with
    bounce_password: str | None = None  # the bounce mailbox's IMAP password
    mailgun_signing_key: str | None = None  # Mailgun's webhook signing key
    postmark_webhook_password: str | None = None  # Postmark webhooks' basic-auth password
    brevo_webhook_token: str | None = None  # the token Brevo's webhooks authenticate with

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Secrets:
        env = os.environ if environ is None else environ
        return cls(
            smtp_password=env.get("LIFECYCLE_SMTP_PASSWORD") or None,
            secret=env.get("LIFECYCLE_SECRET") or None,
            api_key=env.get("LIFECYCLE_API_KEY") or None,
            database_url=env.get("LIFECYCLE_DATABASE_URL") or None,
            dashboard_password=env.get("LIFECYCLE_DASHBOARD_PASSWORD") or None,
            woocommerce_secret=env.get("LIFECYCLE_WOOCOMMERCE_SECRET") or None,
            shopify_secret=env.get("LIFECYCLE_SHOPIFY_SECRET") or None,
            bounce_password=env.get("LIFECYCLE_BOUNCE_PASSWORD") or None,
            mailgun_signing_key=env.get("LIFECYCLE_MAILGUN_SIGNING_KEY") or None,
            postmark_webhook_password=env.get("LIFECYCLE_POSTMARK_WEBHOOK_PASSWORD") or None,
            brevo_webhook_token=env.get("LIFECYCLE_BREVO_WEBHOOK_TOKEN") or None,
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
    # The templates as loaded; None: read from the folder when rendered.
    templates: TemplateSources | None = None
    # tiers.yaml, the loyalty program; None: the shop has no tiers.
    tiers: Tiers | None = None

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
    segment_names = set(segments.items) | segments.broken
    refs = check_references(campaigns.items, campaigns.files, segment_names, root, paths, docs)
    problems.extend(refs)
    if config is None:
        raw = docs.get(_shown(config_file, root))
        names = raw.data.get("campaigns") if raw and isinstance(raw.data, dict) else None
        if raw is not None and isinstance(names, list):
            problems.extend(check_enabled(names, set(campaigns.items), campaigns.broken, raw))
        return None, problems
    bad = {p.file for p in refs}
    good = {n: c for n, c in campaigns.items.items() if campaigns.files[n] not in bad}
    templates = _read_templates(root, config.paths.templates, problems)
    tiers_file = root / config.paths.tiers
    tiers = _load_model(tiers_file, root, Tiers, docs, problems) if tiers_file.is_file() else None
    project = Project(
        root,
        config,
        good,
        segments.items,
        docs,
        {n: campaigns.files[n] for n in good},
        segments.files,
        templates,
        tiers,
    )
    problems.extend(
        cross_check(project, broken=campaigns.broken | (set(campaigns.items) - set(good)))
    )
    return project, problems


def _read_templates(root: Path, folder: str, problems: list[Problem]) -> TemplateSources:
    try:
        return read_template_sources(root / folder)
    except TooManyTemplates as exc:
        problems.append(
            Problem(folder, None, "", f"{exc}; the engine holds every template in memory")
        )
        return TemplateSources(root / folder)


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


def cross_check(project: Project, broken: set[str] | frozenset[str] = frozenset()) -> list[Problem]:
    """Problems that span config.yaml and other files: names that must exist elsewhere.

    `broken` names campaign files that exist but failed to load (already reported).
    """
    config_file = next(iter(project.docs), "config.yaml")
    doc = project.docs.get(config_file, YamlDoc(config_file, None))
    problems = check_enabled(project.config.campaigns, set(project.campaigns), broken, doc)
    config = project.config
    files: list[tuple[str | None, tuple[str, ...], str]] = [  # each file config.yaml names
        (
            config.sending.dkim.key_file if config.sending.dkim else None,
            ("sending", "dkim", "key_file"),
            "key file",
        ),
        (config.sending.smtp.ca_file, ("sending", "smtp", "ca_file"), "certificate authority file"),
        (
            config.bounces.imap.ca_file if config.bounces.imap else None,
            ("bounces", "imap", "ca_file"),
            "certificate authority file",
        ),
        (
            config.webhooks.ses.certificate if config.webhooks.ses else None,
            ("webhooks", "ses", "certificate"),
            "certificate file",
        ),
    ]
    for name, key, what in files:
        if name is not None and not (project.root / name).is_file():
            where = project.where(config_file, key)
            problems.append(Problem(config_file, where, ".".join(key), f"{what} {name} not found"))
    return problems + _check_tier_names(project, config_file)


def _check_tier_names(project: Project, config_file: str) -> list[Problem]:
    """Tier ids named in config.yaml and campaign files that tiers.yaml does not have."""
    tier_ids = [t.id for t in project.tiers.tiers] if project.tiers else []
    known = ", ".join(tier_ids) or f"none: {project.config.paths.tiers} is missing"
    named: list[tuple[str, KeyPath, str]] = [
        (config_file, ("referrals", "rewards", i, "tier"), reward.tier)
        for i, reward in enumerate(project.config.referrals.rewards)
        if reward.tier is not None
    ]
    for name, campaign in project.campaigns.items():
        file = project.campaign_files.get(name, f"campaigns/{name}.yaml")
        trigger = campaign.trigger
        if isinstance(trigger, TierChanged):
            if project.tiers is None:
                named.append((file, ("trigger", "type"), "tier_changed"))
            named += [(file, ("trigger", "to", i), t) for i, t in enumerate(trigger.to)]
        early = getattr(trigger, "early_access", None)
        if early is not None:
            named += [
                (file, ("trigger", "early_access", "tiers", i), t)
                for i, t in enumerate(early.tiers)
            ]
    problems = []
    for file, path, tier in named:
        if tier not in tier_ids:
            what = (
                f"a tier_changed campaign needs {project.config.paths.tiers}"
                if tier == "tier_changed" and path[-1] == "type"
                else f"unknown tier {tier!r} (tiers: {known})"
            )
            problems.append(Problem(file, project.where(file, path), dotted(path), what))
    return problems
