"""HTTP for the `hls` source: playlists, segments (byte ranges, a size limit) and AES-128 keys over
one aiohttp session, failures sorted into "gone" (404/410: it will never come) and "unreachable"
(connection errors, timeouts, 5xx, 408, 429: try again later), plus the capped backoff that retries
the unreachable ones forever.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_never, wait_random_exponential

from .hls_playlist import MediaSegment

log = logging.getLogger("livewatch.sources.hls")

T = TypeVar("T")


class Unreachable(Exception):
    """The server did not answer usefully this time: retry later."""


class Gone(Exception):
    """The server says the resource does not exist (404, 410): retrying will not bring it back."""


class Refused(Exception):
    """Any other 4xx (401, 403, 400...): a wrong URL, header or token; retrying may not help."""


class TooLarge(Exception):
    """The body is bigger than the limit; it was not read to its end."""


_RETRY_STATUS = {408, 425, 429}


def make_session(headers: dict[str, str], connect_timeout: float, read_timeout: float,
                 verify_tls: bool) -> aiohttp.ClientSession:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=read_timeout)
    connector = aiohttp.TCPConnector(ssl=None if verify_tls else False, limit=4)
    return aiohttp.ClientSession(headers=headers, timeout=timeout, connector=connector, raise_for_status=False)


async def get(session: aiohttp.ClientSession, url: str, *, limit: int,
              byterange: tuple[int, int] | None = None, total_timeout: float) -> bytes:
    """The body at `url` (or its byte range), at most `limit` bytes. Raises Unreachable, Gone,
    Refused or TooLarge; never an aiohttp exception."""
    headers = {}
    if byterange is not None:
        offset, length = byterange
        headers["Range"] = f"bytes={offset}-{offset + length - 1}"
    try:
        async with asyncio.timeout(total_timeout):
            async with session.get(url, headers=headers) as response:
                _check_status(url, response.status)
                if response.content_length is not None and response.content_length > limit:
                    raise TooLarge(f"{url} is {response.content_length} bytes")
                body = bytearray()
                async for chunk in response.content.iter_chunked(1 << 16):
                    body += chunk
                    if len(body) > limit:
                        raise TooLarge(f"{url} is more than {limit} bytes")
    except TimeoutError:  # before OSError, its base class
        raise Unreachable(f"{url}: no complete answer within {total_timeout:g}s") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise Unreachable(f"{url}: {type(exc).__name__}: {exc}") from None
    if byterange is not None and response.status == 200:  # the server ignored Range
        offset, length = byterange
        body = body[offset : offset + length]
    return bytes(body)


def _check_status(url: str, status: int) -> None:
    if status < 400:
        return
    if status in (404, 410):
        raise Gone(f"HTTP {status} for {url}")
    if status >= 500 or status in _RETRY_STATUS:
        raise Unreachable(f"HTTP {status} for {url}")
    raise Refused(f"HTTP {status} for {url}")


def decrypt_aes128(data: bytes, key: bytes, iv: bytes) -> bytes:
    """AES-128-CBC with PKCS7 padding, as RFC 8216 section 4.3.2.4 encrypts whole segments."""
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def segment_iv(segment: MediaSegment) -> bytes:
    """The IV: the key's own, else the media sequence number as a 128-bit big-endian integer."""
    return segment.key.iv if segment.key and segment.key.iv else segment.sequence.to_bytes(16, "big")


class SegmentReader:
    """A media segment's bytes, decrypted where the playlist says it is (AES-128; the current key
    is fetched once and kept while segments use it: keys rotate)."""

    def __init__(self, session: aiohttp.ClientSession, timeout: float):
        self.session, self.timeout = session, timeout
        self._keys: dict[str, bytes] = {}

    async def read(self, seg: MediaSegment, *, limit: int) -> bytes:
        """Raises Gone, Refused, TooLarge, Unreachable, or ValueError/KeyError when it cannot be
        decrypted (a bad key or padding, an unsupported METHOD)."""
        data = await get(self.session, seg.uri, limit=limit, byterange=seg.byterange,
                         total_timeout=self.timeout)
        if seg.key is None:
            return data
        if seg.key.method != "AES-128":
            raise ValueError(f"encryption METHOD={seg.key.method} is not supported (only AES-128)")
        if seg.key.uri not in self._keys:
            try:
                key = await get(self.session, seg.key.uri, limit=64, total_timeout=self.timeout)
            except (Gone, Refused, TooLarge) as exc:
                raise ValueError(f"cannot get its key: {exc}") from None
            if len(key) != 16:
                raise ValueError(f"the key at {seg.key.uri} is {len(key)} bytes, not 16")
            self._keys = {seg.key.uri: key}
        return await asyncio.to_thread(decrypt_aes128, data, self._keys[seg.key.uri], segment_iv(seg))


async def retry_forever(
    attempt: Callable[[], Awaitable[T]],
    *,
    initial: float,
    maximum: float,
    on_retry: Callable[[int, float, BaseException], None],
) -> T:
    """`attempt()` until it does not raise Unreachable, waiting with jittered exponential backoff
    capped at `maximum` seconds between tries; `on_retry(attempt_number, wait, error)` before each
    wait. Other exceptions (and cancellation) go through at once."""

    def before_sleep(state: RetryCallState) -> None:
        on_retry(state.attempt_number, state.next_action.sleep, state.outcome.exception())

    async for try_ in AsyncRetrying(
        retry=retry_if_exception_type(Unreachable),
        stop=stop_never,
        wait=wait_random_exponential(multiplier=initial, max=maximum),
        before_sleep=before_sleep,
        reraise=True,
    ):
        with try_:
            return await attempt()
    raise AssertionError("unreachable: stop_never")  # pragma: no cover
