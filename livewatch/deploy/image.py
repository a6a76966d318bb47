"""`livewatch deploy --build-image`: build the fleet's image, push it to ECR, return the tag to run.

**Who owns the ECR repository: deploy, not the fleet stack.** The image must be in the repository
before the fleet's ECS service is created (else the service's tasks fail to pull and the
deployment circuit breaker rolls the stack back), so a repository made by the fleet stack would
come too late; and deleting the fleet (to change the network, say) must not delete every image
with it. So deploy creates the repository the fleet names (``ImageRepository``) when it is missing
(scan on push, a lifecycle policy that keeps the newest images), and `destroy` leaves it.

Tags: the package version (``0.1.0``, moves with each build of that version) and the git commit
(``<12 hex>``, ``-dirty-<UTC time>`` when the tree has uncommitted changes, so every build of a
changed tree is a new tag). The fleet stack gets the commit tag, so each build rolls the service.

Login: ECR's ``GetAuthorizationToken`` (boto3) before the build, so missing permissions fail in a
second rather than after the build. The token goes to a temporary auth file that only the push
reads: never to a command line or to ``~/.docker``.
"""
from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from livewatch.errors import ConfigError, LivewatchError

from .session import aws_errors, error_code

TOOLS = ("docker", "podman", "buildah")
#: Images the repository's lifecycle policy keeps (the oldest beyond these expire).
KEEP_IMAGES = 30


@dataclass
class ImageOptions:
    tool: str | None = None                 # docker | podman | buildah; None: the first that works
    build_args: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)  # "id=ca-bundle,src=/path" as BuildKit takes them
    push_to: str | None = None              # a containers-transports destination instead of ECR


def source_tree() -> Path:
    """The directory holding the Dockerfile: the checkout livewatch runs from, else the current one."""
    for path in (Path(__file__).resolve().parents[2], Path.cwd()):
        if (path / "Dockerfile").is_file() and (path / "pyproject.toml").is_file():
            return path
    raise ConfigError("--build-image needs livewatch's source tree (its Dockerfile is not part of the "
                      "installed package): run it from a git checkout of livewatch")


def image_tags(context: Path, version: str) -> tuple[list[str], str]:
    """([commit tag, version tag], full commit) - or ([version tag], "unknown") outside git."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(context), *args], capture_output=True, text=True)

    if shutil.which("git") is None or (head := git("rev-parse", "HEAD")).returncode != 0:
        return [version], "unknown"
    commit = head.stdout.strip()
    tag = commit[:12]
    if git("status", "--porcelain", "--untracked-files=no").stdout.strip():
        tag += "-dirty-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return [tag, version], commit


def find_tool(wanted: str | None) -> str | None:
    """The container tool to use: `wanted` (it must be installed), else the first of docker (with a
    daemon that answers), podman, buildah."""
    if wanted:
        if shutil.which(wanted) is None:
            raise ConfigError(f"--image-tool {wanted}: not installed")
        return wanted
    for tool in TOOLS:
        if shutil.which(tool) is None:
            continue
        if tool == "docker" and not _docker_daemon_answers():
            continue  # the client without a daemon
        return tool
    return None


def _docker_daemon_answers() -> bool:
    try:
        return subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                              timeout=30).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def build_command(tool: str, image: str, tags: list[str], context: Path,
                  options: ImageOptions, build_args: dict[str, str]) -> list[str]:
    # podman and buildah write the OCI format unless told otherwise, which has no HEALTHCHECK.
    command = {"docker": ["docker", "build"], "podman": ["podman", "build", "--format", "docker"],
               "buildah": ["buildah", "bud", "--layers", "--format", "docker"]}[tool]
    command += ["--file", str(context / "Dockerfile")]
    for tag in tags:
        command += ["--tag", f"{image}:{tag}"]
    args = {**build_args, **options.build_args}
    for key, value in args.items():
        command += ["--build-arg", f"{key}={value}"]
    # The version and commit as labels on the command line too: buildah reuses a cached LABEL step
    # whatever the ARG values in it, so a commit that changes nothing in the build context would
    # keep the previous commit's label (a --label is applied to the image as committed).
    for key, label in (("VERSION", "version"), ("REVISION", "revision")):
        if key in args:
            command += ["--label", f"org.opencontainers.image.{label}={args[key]}"]
    for secret in options.secrets:
        command += ["--secret", secret]
    return [*command, str(context)]


def push_commands(tool: str, image: str, tags: list[str], authfile: str | None,
                  push_to: str | None) -> list[list[str]]:
    if push_to:  # one image to a local destination (an OCI archive, a directory)
        return [[tool, "push", f"{image}:{tags[0]}", push_to]]
    auth = ["--authfile", authfile] if authfile and tool != "docker" else []
    return [[tool, "push", *auth, f"{image}:{tag}"] for tag in tags]


def ensure_repository(ecr, name: str, tags: dict[str, str], echo: Callable[[str], None]) -> str:
    """The repository's URI, creating the repository first if it is missing."""
    from botocore.exceptions import ClientError

    with aws_errors():
        try:
            return ecr.describe_repositories(repositoryNames=[name])["repositories"][0]["repositoryUri"]
        except ClientError as exc:
            if error_code(exc) != "RepositoryNotFoundException":
                raise
        repository = ecr.create_repository(
            repositoryName=name, imageScanningConfiguration={"scanOnPush": True},
            tags=[{"Key": k, "Value": v} for k, v in tags.items()])["repository"]
        ecr.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=json.dumps({"rules": [{
            "rulePriority": 1, "description": f"keep the newest {KEEP_IMAGES} images",
            "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": KEEP_IMAGES},
            "action": {"type": "expire"}}]}))
    echo(f"ECR repository {name}: created ({repository['repositoryUri']})")
    return repository["repositoryUri"]


def ecr_auth(ecr) -> tuple[str, dict]:
    """(registry host, auth file contents) from ECR's GetAuthorizationToken."""
    with aws_errors():
        data = ecr.get_authorization_token()["authorizationData"][0]
    token = data["authorizationToken"]
    base64.b64decode(token, validate=True)  # "AWS:<password>"
    registry = data["proxyEndpoint"].removeprefix("https://").rstrip("/")
    return registry, {"auths": {registry: {"auth": token}}}


def publish(session, repository: str, project: str, options: ImageOptions,
            echo: Callable[[str], None]) -> str:
    """Build and push the image; return the tag the fleet stack is to run."""
    from livewatch import __version__

    context = source_tree()
    tags, commit = image_tags(context, __version__)
    if len(tags) == 1:
        echo(f"note: {context} is not a git checkout: the image is tagged {tags[0]} only, and a "
             f"rebuild of the same version does not roll the fleet")
    build_args = {"VERSION": __version__, "REVISION": commit}
    tool = find_tool(options.tool)
    if options.push_to and tool not in (None, "podman", "buildah"):
        raise ConfigError(f"--push-to needs podman or buildah ({tool} pushes to registries only)")
    ecr = session.client("ecr")
    if tool is None:
        _print_manual_steps(ecr, repository, tags, context, options, build_args, echo)
        raise ConfigError("no container tool (docker with a running daemon, podman or buildah): "
                          "run the commands above, or install one and run this again")
    uri = ensure_repository(ecr, repository, {"Project": project, "ManagedBy": "livewatch"}, echo)
    registry, auth = ecr_auth(ecr)
    echo(f"ECR login: {registry} (GetAuthorizationToken)")
    with tempfile.TemporaryDirectory(prefix="livewatch-ecr-auth-") as auth_dir:
        authfile = Path(auth_dir) / "config.json"  # docker reads $DOCKER_CONFIG/config.json
        authfile.touch(mode=0o600)
        authfile.write_text(json.dumps(auth))
        _run(build_command(tool, uri, tags, context, options, build_args), {"DOCKER_BUILDKIT": "1"}, echo)
        for command in push_commands(tool, uri, tags, str(authfile), options.push_to):
            _run(command, {"DOCKER_CONFIG": auth_dir}, echo)  # docker's auth; podman/buildah: --authfile
    where = options.push_to or uri
    echo(f"image {uri}:{tags[0]} pushed to {where} (tags: {', '.join(tags)})")
    return tags[0]


def _run(command: list[str], env: dict[str, str], echo: Callable[[str], None]) -> None:
    echo(f"$ {shlex.join(command)}")
    result = subprocess.run(command, env={**os.environ, **env})
    if result.returncode != 0:
        raise LivewatchError(f"{command[0]} {command[1]} failed (exit status {result.returncode}): "
                             f"its output is above")


def _print_manual_steps(ecr, repository: str, tags: list[str], context: Path, options: ImageOptions,
                        build_args: dict[str, str], echo: Callable[[str], None]) -> None:
    from botocore.exceptions import ClientError

    region = ecr.meta.region_name
    with aws_errors():
        endpoint = ecr.get_authorization_token()["authorizationData"][0]["proxyEndpoint"]
    registry = endpoint.removeprefix("https://").rstrip("/")
    image = f"{registry}/{repository}"
    echo("No container tool found. To build and push the image yourself (docker shown; podman takes "
         "the same arguments, plus --format docker to keep the HEALTHCHECK):")
    with aws_errors():
        try:
            ecr.describe_repositories(repositoryNames=[repository])
            missing = False
        except ClientError as exc:
            if error_code(exc) != "RepositoryNotFoundException":
                raise
            missing = True
    if missing:
        echo(f"  aws ecr create-repository --repository-name {repository} "
             f"--image-scanning-configuration scanOnPush=true --region {region}")
    echo(f"  aws ecr get-login-password --region {region} | docker login --username AWS "
         f"--password-stdin {registry}")
    echo(f"  DOCKER_BUILDKIT=1 {shlex.join(build_command('docker', image, tags, context, options, build_args))}")
    for command in push_commands("docker", image, tags, None, None):
        echo(f"  {shlex.join(command)}")
    echo(f"  livewatch deploy -p fleet.ImageRepository={repository} -p fleet.ImageTag={tags[0]}")
