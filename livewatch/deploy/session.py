"""The AWS session the deploy commands use, and AWS errors turned into one-line messages.

The commands use boto3, not aioboto3: they are one-shot and sequential (a stack waits for the one
before it), so an event loop would buy nothing, and boto3 is what the AWS CLI users who run them
know. Credentials, region and endpoints come from the standard chain: environment, profile
(``AWS_PROFILE``), SSO, instance or container role; ``AWS_ENDPOINT_URL`` and
``AWS_ENDPOINT_URL_<SERVICE>`` point at an emulator (botocore reads them itself).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from livewatch.errors import ConfigError, LivewatchError

NO_CREDENTIALS = (
    "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE "
    "(after `aws configure` or `aws sso login`)"
)
NO_REGION = ("no AWS region set: set AWS_REGION (or AWS_DEFAULT_REGION), a region in your profile, "
             "or pass --region")


def aws_session(region: str | None = None):
    """A boto3 session with credentials and a region, or a `ConfigError` that says what to set."""
    import boto3
    from botocore.exceptions import BotoCoreError

    with aws_errors():
        try:
            session = boto3.Session(region_name=region)
            credentials = session.get_credentials()
        except BotoCoreError as exc:  # a named profile that does not exist, a broken config file
            raise ConfigError(f"AWS configuration: {exc}") from None
        if credentials is None:
            raise ConfigError(NO_CREDENTIALS)
        if not session.region_name:
            raise ConfigError(NO_REGION)
    return session


def describe_target(session) -> str:
    """``account 123456789012, region eu-west-1`` (plus the endpoint when one is set): checks the
    credentials work before anything is created, and shows the user where things will go."""
    with aws_errors():
        account = session.client("sts").get_caller_identity()["Account"]
    where = f"account {account}, region {session.region_name}"
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    return f"{where}, endpoint {endpoint}" if endpoint else where


@contextmanager
def aws_errors() -> Iterator[None]:
    """Turn botocore's exceptions into livewatch's, with a message a user can act on."""
    from botocore.exceptions import (
        ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError, ProfileNotFound,
        TokenRetrievalError, UnauthorizedSSOTokenError,
    )

    try:
        yield
    except NoCredentialsError:
        raise ConfigError(NO_CREDENTIALS) from None
    except NoRegionError:
        raise ConfigError(NO_REGION) from None
    except (ProfileNotFound, TokenRetrievalError, UnauthorizedSSOTokenError) as exc:
        raise ConfigError(f"AWS credentials: {exc}") from None
    except EndpointConnectionError as exc:
        raise LivewatchError(f"cannot reach AWS: {exc}") from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "Error"), error.get("Message", str(exc))
        if code in ("ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId",
                    "UnrecognizedClientException", "SignatureDoesNotMatch", "AuthFailure"):
            raise ConfigError(f"AWS rejected the credentials ({code}): {message}") from None
        raise LivewatchError(f"{exc.operation_name} failed ({code}): {message}") from None


def error_code(exc: Exception) -> str:
    """The AWS error code of a botocore ClientError ('' for anything else)."""
    response = getattr(exc, "response", None) or {}
    return response.get("Error", {}).get("Code", "")
