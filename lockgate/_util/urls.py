"""URLs in messages: never with their password."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = ["redact_url"]


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages, metadata and URIs).

    Example:
        >>> redact_url("postgresql://app:s3cret@db:5432/lockgate")
        'postgresql://app:***@db:5432/lockgate'
        >>> redact_url("/plain/path")
        '/plain/path'
    """
    try:
        parts = urlsplit(url)
        password = parts.password
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    if password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
