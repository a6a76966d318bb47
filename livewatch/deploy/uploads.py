"""What deploy puts in the artifact bucket, and the checks it makes before creating anything.

The model package goes to ``models/model-<sha256 prefix>.tar.gz``: a new package is a new key,
so the model stack's `ModelDataKey` changes and SageMaker rolls the endpoint over to it; the same
package uploaded twice is one object. The demo video always goes to ``videos/demo.mp4``.
"""
from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

from livewatch.errors import ConfigError, LivewatchError

from .session import aws_errors, error_code

VIDEO_KEY = "videos/demo.mp4"


def check_model_package(path: Path) -> None:
    """Refuse a file that is not a model.tar.gz as SageMaker's MXNet container serves it, now,
    rather than when the endpoint fails to start twenty minutes later."""
    from livewatch.model.artifacts import REQUIRED_FILES

    if not path.is_file():
        raise ConfigError(f"--model {path}: no such file")
    try:
        with tarfile.open(path, "r:gz") as tar:
            names = {Path(n).as_posix().removeprefix("./") for n in tar.getnames()}
    except (tarfile.TarError, OSError) as exc:
        raise ConfigError(f"--model {path}: not a .tar.gz ({exc})") from None
    missing = [f for f in REQUIRED_FILES if f not in names]
    if missing:
        raise ConfigError(f"--model {path}: missing {', '.join(missing)} at the archive's root "
                          f"(pack a model directory with its code/ folder as model.tar.gz)")


def check_video(path: Path) -> None:
    if not path.is_file():
        raise ConfigError(f"--video {path}: no such file")
    if path.suffix.lower() != ".mp4":
        raise ConfigError(f"--video {path}: MediaLive loops an MP4 file; convert it to .mp4 first")


def model_key(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"models/model-{digest.hexdigest()[:16]}.tar.gz"


def exists(s3, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    with aws_errors():
        try:
            s3.head_object(Bucket=bucket, Key=key)
            return True
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise


def upload(s3, path: Path, bucket: str, key: str, echo, *, skip_if_present: bool = False) -> str:
    """Upload `path` to s3://bucket/key (multipart for big files); return the key."""
    if skip_if_present and exists(s3, bucket, key):
        echo(f"s3://{bucket}/{key}: already there")
        return key
    from boto3.exceptions import S3UploadFailedError

    size = path.stat().st_size
    echo(f"uploading {path} ({size / 1e6:.1f} MB) to s3://{bucket}/{key}")
    with aws_errors():
        try:
            s3.upload_file(str(path), bucket, key)
        except S3UploadFailedError as exc:
            raise LivewatchError(f"upload of {path} to s3://{bucket}/{key} failed: {exc}") from None
    return key


def check_image(ecr, repository: str, tag: str) -> None:
    """The fleet's image must be in ECR before its service starts, or ECS retries for an hour."""
    from botocore.exceptions import ClientError

    with aws_errors():
        try:
            ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
            return
        except ClientError as exc:
            if error_code(exc) not in ("RepositoryNotFoundException", "ImageNotFoundException"):
                raise
    registry = f"<account>.dkr.ecr.{ecr.meta.region_name}.amazonaws.com"
    raise ConfigError(
        f"no image {repository}:{tag} in ECR: push the livewatch image to {registry}/{repository}:{tag} "
        f"first (aws ecr create-repository --repository-name {repository}), "
        f"pass -p fleet.ImageRepository=... "
        f"-p fleet.ImageTag=..., or leave the fleet out with --stack"
    )
