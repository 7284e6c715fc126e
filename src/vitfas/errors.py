"""The exception hierarchy shared by every part of vitfas.

Every error raised on purpose by vitfas derives from :class:`VitfasError`, so a caller
(the CLI, the HTTP service) can catch one type and report a clean message. Messages name
the file or key involved, what was expected and what was found.
"""

from __future__ import annotations


class VitfasError(Exception):
    """Base class of all vitfas errors."""


class BadConfigError(VitfasError, ValueError):
    """A configuration value or key is invalid (unknown key, wrong type, bad range)."""


class BadCheckpointError(VitfasError, ValueError):
    """A checkpoint cannot be read or does not fit the model it is loaded into."""


class BadImageError(VitfasError, ValueError):
    """An image file is missing, empty, corrupt or of an unsupported kind."""


class TooManyPixelsError(BadImageError):
    """An image whose header claims more pixels than the limit (a decompression bomb)."""


class BadVideoError(VitfasError, ValueError):
    """A video file is missing, empty, corrupt or has no decodable frames."""


class NoFaceError(VitfasError):
    """No face was found where one was required (a failure to acquire, FTA)."""


class BadDataError(VitfasError, ValueError):
    """A dataset layout, manifest or protocol file is malformed or unknown."""
