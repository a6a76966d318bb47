"""Exceptions that decide what happens to a segment, and to the daemon."""


class LivewatchError(Exception):
    """Base class for livewatch's own errors."""


class ConfigError(LivewatchError):
    """The configuration is invalid; raised before the daemon starts. The message names the fix."""


class SegmentError(LivewatchError):
    """This segment can never succeed (not video, corrupt, too short...).

    The daemon turns it into an error detection and acknowledges the segment, so it never loops.
    """


class TransientError(LivewatchError):
    """A failure that may pass (throttling, a timeout, a sink that is down).

    The segment is returned to its source unacknowledged, to be delivered again later.
    """


class ModelError(LivewatchError):
    """The model could not be found, downloaded or loaded (at start: the daemon does not start),
    or it failed on valid input while running (out of memory, a crashed backend): transient, the
    daemon retries the segment and releases it, never an error detection."""
