"""What every command needs, built once and handed in: project, secrets, database.

Nothing here runs at import time; the command line creates one `App`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from sqlalchemy.engine import Engine

from ..project import Project, Secrets, config_path, load_project
from ..store import make_engine, upgrade


@dataclass
class App:
    config_file: Path
    secrets: Secrets = field(default_factory=Secrets.from_env)

    @classmethod
    def from_option(cls, config: str | os.PathLike[str] | None) -> App:
        return cls(config_path(config))

    @cached_property
    def project(self) -> Project:
        """The loaded project; raises ConfigError listing every problem."""
        return load_project(self.config_file)

    @cached_property
    def engine(self) -> Engine:
        """The database, upgraded to the newest schema on first use."""
        engine = make_engine(self.project.database_url(self.secrets))
        upgrade(engine)
        return engine
