"""A model.tar.gz on S3, downloaded once per ETag into the model cache.

boto3 finds credentials the usual way and honours ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``
(botocore reads them itself), which is how tests point it at a local emulator.
"""
from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from livewatch.errors import ModelError

from .artifacts import (
    ModelArtifact,
    Resolver,
    archive_name,
    load_artifact,
    register_resolver,
    unpack_model_tar,
    unpacked_root,
)


def fetch_s3_model(uri: str, cache: Path) -> ModelArtifact:
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        raise ModelError(f"model {uri!r} is on S3, which needs boto3: pip install 'livewatch[aws]'") from None
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise ModelError(f"model {uri!r} is not an s3://bucket/key URI")
    # Bounded: a model load that hangs on the network would hold the daemon's start-up forever.
    s3 = boto3.client("s3", config=Config(connect_timeout=10, read_timeout=60,
                                          retries={"mode": "standard", "max_attempts": 5}))
    try:
        etag = s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
        dest = cache / "s3" / hashlib.sha256(f"{bucket}/{key}#{etag}".encode()).hexdigest()[:16]
        if not dest.is_dir():
            cache.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
                archive = Path(tmp) / "model.tar.gz"
                s3.download_file(bucket, key, str(archive))
                unpack_model_tar(archive, dest)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "?"), error.get("Message") or ""
        if code in ("404", "NoSuchKey", "NoSuchBucket"):
            raise ModelError(f"model {uri!r} not found on S3 ({code})") from None
        raise ModelError(f"cannot read model {uri!r} from S3: {code} {message}".rstrip()) from None
    except BotoCoreError as exc:  # no credentials, endpoint unreachable, a broken download
        raise ModelError(f"cannot read model {uri!r} from S3: {exc}") from None
    return load_artifact(unpacked_root(dest), name=archive_name(key), version=etag[:12])


register_resolver(Resolver("s3", handles=lambda spec: spec.startswith("s3://"), fetch=fetch_s3_model))
