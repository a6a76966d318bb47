"""Install a plugin as a real distribution for a test, and run ``livewatch`` with it.

A plugin is found through its entry points, so a test that checks it the way a user meets it
installs it: ``install_distribution(project_dir, site)`` puts it (without dependencies) into a
folder of its own, and ``env_with_site(site)`` is an environment in which a ``livewatch``
subprocess imports from that folder too. Nothing is installed into the running environment.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def install_distribution(project: str | os.PathLike, site: str | os.PathLike) -> Path:
    """``pip install --target site project`` (no dependencies, no build isolation: offline)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(project)],
        check=True,
    )
    return Path(site)


def env_with_site(*sites: str | os.PathLike) -> dict[str, str]:
    """This process's environment with `sites` first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [*map(str, sites), env.get("PYTHONPATH")]))
    return env
