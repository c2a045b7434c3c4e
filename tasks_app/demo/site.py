"""The bundled demo site's state: which of its two versions is live. Shared by web and worker processes."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

VERSIONS = (1, 2)


def _state_file() -> Path:
    return Path(settings.VAR_DIR) / "demo_site_version"


def demo_site_version() -> int:
    try:
        value = int(_state_file().read_text().strip())
    except (FileNotFoundError, ValueError):
        return 1
    return value if value in VERSIONS else 1


def demo_site_set_version(version: int) -> None:
    if version not in VERSIONS:
        raise ValueError(f"the demo site has versions {VERSIONS}, not {version}")
    path = _state_file()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(str(version))
    tmp.replace(path)  # atomic: a request never reads a half-written file
