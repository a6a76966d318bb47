"""What every AWS plugin shares: aioboto3 clients configured the way AWS tools are, and which
errors are worth retrying.

Credentials and region come from botocore's usual chain (env, ``AWS_PROFILE`` / `profile`,
~/.aws files, container and instance roles). Endpoints: a plugin's `endpoint_urls` option for one
service, then its `endpoint_url` for all, then botocore's own ``AWS_ENDPOINT_URL_<SERVICE>`` /
``AWS_ENDPOINT_URL`` variables. aioboto3 is imported inside these functions, so importing a plugin
module (``livewatch --help``, ``livewatch plugins``) does not import it.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from pydantic import Field

from .components import Options
from .errors import ConfigError

#: Error codes that mean "try again later" (throttling, a service having a bad moment).
TRANSIENT_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "RequestThrottledException", "TooManyRequestsException", "ProvisionedThroughputExceededException",
    "RequestLimitExceeded", "TransactionInProgressException", "LimitExceededException",
    "InternalError", "InternalFailure", "InternalServerError", "ServiceUnavailable",
    "ServiceUnavailableException", "SlowDown", "RequestTimeout", "RequestTimeoutException",
    "PriorRequestNotComplete", "EC2ThrottledException", "KMSThrottlingException",
})


class AwsOptions(Options):
    """The options every AWS plugin has (mixed into its own Options)."""

    region: str | None = Field(None, description="AWS region; default: AWS_REGION / the profile's")
    profile: str | None = Field(None, description="named profile from ~/.aws; default: the usual chain")
    endpoint_url: str | None = Field(
        None, description="endpoint for every AWS service this plugin uses (an emulator); "
        "default: AWS_ENDPOINT_URL_<SERVICE> / AWS_ENDPOINT_URL, else AWS")
    endpoint_urls: dict[str, str] = Field(
        default_factory=dict, description='per-service endpoints, e.g. {sqs = "http://localhost:4566"}')
    connect_timeout: float = Field(5.0, gt=0, description="seconds to connect to AWS")
    read_timeout: float = Field(30.0, gt=0, description="seconds to wait for an AWS response")
    max_attempts: int = Field(
        4, ge=1, description="attempts per AWS call (botocore's standard retry mode, with backoff)")


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def is_transient(exc: BaseException) -> bool:
    """Throttling, a 5xx, a timeout or a connection that failed: the same call may succeed later."""
    from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError

    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return error_code(exc) in TRANSIENT_CODES or status >= 500 or status == 429
    if isinstance(exc, (HTTPClientError, asyncio.TimeoutError, TimeoutError, ConnectionError)):
        return True  # EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ...
    try:
        import aiohttp
    except ImportError:  # pragma: no cover
        return False
    if isinstance(exc, aiohttp.ClientError):
        return True
    return isinstance(exc, BotoCoreError) and "connect" in type(exc).__name__.lower()


def describe(exc: BaseException) -> str:
    """An AWS error in one line: the code and message of a ClientError, else the exception."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', '?')}: {error.get('Message') or ''}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


def client_config(options: AwsOptions, *, read_timeout: float | None = None, **extra: Any):
    from botocore.config import Config

    return Config(
        connect_timeout=options.connect_timeout,
        read_timeout=read_timeout if read_timeout is not None else options.read_timeout,
        # total_max_attempts counts the first call too (botocore's `max_attempts` counts retries)
        retries={"mode": "standard", "total_max_attempts": options.max_attempts},
        **extra,
    )


async def open_client(stack: contextlib.AsyncExitStack, service: str, options: AwsOptions,
                      *, read_timeout: float | None = None, **config: Any):
    """An aioboto3 client for `service`, closed when `stack` closes."""
    try:
        import aioboto3
    except ImportError:
        raise ConfigError("the AWS plugins need aioboto3: pip install 'livewatch[aws]'") from None
    from botocore.exceptions import BotoCoreError

    try:
        session = aioboto3.Session(profile_name=options.profile, region_name=options.region)
        kwargs: dict[str, Any] = {"config": client_config(options, read_timeout=read_timeout, **config)}
        endpoint = options.endpoint_urls.get(service) or options.endpoint_url
        if endpoint:
            kwargs["endpoint_url"] = endpoint
        return await stack.enter_async_context(session.client(service, **kwargs))
    except BotoCoreError as exc:  # an unknown profile, no region...
        raise ConfigError(f"cannot make an AWS {service} client: {exc}") from exc
