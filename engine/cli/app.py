"""What every command needs, built once and handed in: project, secrets, database.

Nothing here runs at import time; the command line creates one `App`.

Secrets come from the environment. The one exception is the demo: when
LIFECYCLE_SECRET is not set and `.lifecycle-secret` (made by `lifecycle demo` and
`lifecycle run --demo`) is beside config.yaml, that file's secret signs the links,
so the commands work on the demo in a second terminal. `lifecycle run` without
`--demo` never reads that file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from sqlalchemy.engine import Engine

from ..project import Project, Secrets, config_path, load_project
from ..store import make_engine, upgrade


@dataclass
class App:
    config_file: Path
    environment: Secrets = field(default_factory=Secrets.from_env)

    @classmethod
    def from_option(cls, config: str | os.PathLike[str] | None) -> App:
        return cls(config_path(config))

    @cached_property
    def secrets(self) -> Secrets:
        """The environment's secrets; without LIFECYCLE_SECRET, the demo's secret from
        `.lifecycle-secret` beside config.yaml when that file exists (EngineError if
        it holds no usable secret)."""
        if self.environment.secret:
            return self.environment
        from ..daemon import stored_demo_secret

        stored = stored_demo_secret(self.config_file.parent)
        return replace(self.environment, secret=stored) if stored else self.environment

    @cached_property
    def project(self) -> Project:
        """The loaded project; raises ConfigError listing every problem."""
        return load_project(self.config_file)

    @cached_property
    def engine(self) -> Engine:
        """The database, upgraded to the newest schema on first use."""
        engine = make_engine(self.project.database_url(self.environment))
        upgrade(engine)
        return engine
