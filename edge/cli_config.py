"""The terminal's config as each ``splitface-edge`` command needs it, and no more.

Loading a config checks its files (key permissions, the models folder, a camera file). A
command must not refuse to run over a file it never opens: ``status`` and ``admin`` talk to
the servers without a face pipeline, ``embed`` runs the pipeline without the servers, and no
command reads the configured camera (frames come from the command line). So the field checks
always run, and the file checks only for the parts the command uses.
"""

from __future__ import annotations

from pathlib import Path

from splitface.shared.config import EdgeConfig, load_edge_config
from splitface.shared.config_schema import ConfigError, Problem, iter_file_checks

#: Dotted config keys (or their sections) whose files each need checks.
KEY_FILES = ("secret_key_file", "servers")
MODEL_FILES = ("models",)


def _under(key: str, sections: tuple[str, ...]) -> bool:
    return any(key == s or key.startswith(s + ".") for s in sections)


def load_cli_config(path: Path, *, keys: bool, models: bool) -> EdgeConfig:
    """``path`` loaded and checked; ConfigError lists every problem of the parts used."""
    config = load_edge_config(path, check_files=False)
    wanted = (KEY_FILES if keys else ()) + (MODEL_FILES if models else ())
    problems = [Problem(key, message) for key, check, value in iter_file_checks(config)
                if _under(key, wanted) and (message := check(value))]
    if problems:
        raise ConfigError(Path(path), problems)
    return config
