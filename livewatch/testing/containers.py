"""Container builds in tests, without a Docker daemon or Docker Hub: Debian's buildah and podman.

- `local_base_image()`: a Python 3.11 base made from Debian's own packages (debootstrap, then
  ``podman import``), standing in for ``python:3.11-slim-bookworm``. Making it takes about a
  minute, so its root filesystem is kept as a tarball under ``~/.cache/livewatch/test-images``
  and the imported image stays in the containers storage: later runs reuse either.
- `pip_build_secrets()`: the host's pip settings and CA bundle as files to hand a build as
  BuildKit secrets, so pip inside the build reaches the package registry the way the host does.
- `run_in_image()`: a command in an image (``buildah run --isolation chroot``: ``podman run``
  needs cgroups and rlimits that these machines do not give).

`require_tools()` names what to install when a tool is missing (``make setup`` installs them
when run as root).
"""
from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from contextlib import contextmanager
from collections.abc import Iterator, Sequence
from pathlib import Path

BASE_IMAGE = "localhost/livewatch-test-base:bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip")
TOOLS = {"buildah": "buildah", "podman": "podman", "debootstrap": "debootstrap"}


def cache_dir() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "livewatch" / "test-images"


def require_tools(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        packages = " ".join(TOOLS.get(n, n) for n in missing)
        raise RuntimeError(f"{', '.join(missing)} not found: install them (as root: apt-get install -y "
                           f"{packages}; `make setup` does it when run as root)")


def image_exists(name: str) -> bool:
    return subprocess.run(["buildah", "inspect", "--type", "image", name], capture_output=True).returncode == 0


def local_base_image(name: str = BASE_IMAGE, timeout: float = 900) -> str:
    """A Debian bookworm image with python3 (3.11), venv and pip under `name`, made if missing."""
    require_tools("buildah", "podman", "debootstrap")
    if image_exists(name):
        return name
    tarball = cache_dir() / "bookworm-python3-rootfs.tar"
    if not tarball.exists():
        _debootstrap_tarball(tarball, timeout)
    _check(["podman", "import", str(tarball), name], timeout=300)
    return name


def _debootstrap_tarball(tarball: Path, timeout: float) -> None:
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rootfs-", dir=tarball.parent) as tmp:
        rootfs = Path(tmp) / "rootfs"
        _check(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", "bookworm",
                str(rootfs), DEBIAN_MIRROR], timeout=timeout)
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (rootfs / cache).glob("*"):
                if item.is_file():
                    item.unlink()
        partial = tarball.with_suffix(f".{uuid.uuid4().hex}.part")
        _check(["tar", "-C", str(rootfs), "-cf", str(partial), "."], timeout=300)
        partial.replace(tarball)


@contextmanager
def pip_build_secrets() -> Iterator[dict[str, Path]]:
    """``{"pip-conf": path, "ca-bundle": path}`` for the build's pip (either may be absent).

    pip.conf: the host's effective settings (``pip config list`` and ``PIP_*``), less what points at
    this machine's disk (``file://`` indexes, local find-links, constraints, the cert path itself):
    a build cannot see those. ca-bundle: the bundle the host's pip trusts (its ``cert`` setting,
    else ``SSL_CERT_FILE``, else Debian's bundle), for a registry behind a TLS-inspecting proxy.
    """
    settings = _host_pip_settings()
    cert = settings.pop("cert", None) or os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt"
    with tempfile.TemporaryDirectory(prefix="pip-secrets-") as tmp:
        secrets: dict[str, Path] = {}
        config = configparser.ConfigParser(interpolation=None)
        config["global"] = {k: v for k, v in settings.items() if _reachable_from_a_build(k, v)}
        path = Path(tmp) / "pip.conf"
        with open(path, "w") as f:
            config.write(f)
        secrets["pip-conf"] = path
        if Path(cert).is_file():
            secrets["ca-bundle"] = Path(cert)
        yield secrets


def _host_pip_settings() -> dict[str, str]:
    """pip's global/install settings as the host resolves them (files, then ``PIP_*``)."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    settings: dict[str, str] = {}
    for line in listed.stdout.splitlines():
        key, _, value = line.partition("=")
        section, _, option = key.partition(".")
        if section in ("global", "install", ":env:") and option:
            settings[option] = value.strip().strip("'\"")
    for key, value in os.environ.items():
        if key.startswith("PIP_"):
            settings[key[4:].lower().replace("_", "-")] = value
    return settings


def _reachable_from_a_build(option: str, value: str) -> bool:
    if option in ("constraint", "requirement", "find-links", "cert", "client-cert", "config-file"):
        return False
    urls = value.split()
    return not any(u.startswith("file:") or u.startswith("/") for u in urls)


def secret_args(secrets: dict[str, Path]) -> list[str]:
    return [arg for key, path in secrets.items() for arg in ("--secret", f"id={key},src={path}")]


def run_in_image(image: str, command: Sequence[str], *, user: str | None = None,
                 volumes: Sequence[str] = (), env: dict[str, str] | None = None,
                 timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `command` in a working container of `image` (removed afterwards); never raises on a
    non-zero exit. `volumes`: ``host:container[:options]``."""
    container = _check(["buildah", "from", "--pull=never", image], timeout=120).stdout.strip()
    try:
        args = ["buildah", "run", "--isolation", "chroot"]
        if user:
            args += ["--user", user]
        for volume in volumes:
            args += ["--volume", volume]
        for key, value in (env or {}).items():
            args += ["--env", f"{key}={value}"]
        return subprocess.run([*args, container, "--", *command], capture_output=True, text=True,
                              timeout=timeout)
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True)


def _check(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result
