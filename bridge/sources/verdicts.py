"""What an HTTP answer means for a poll: the retry policy is the `VERDICTS` table (status ->
error type and advice), not ifs spread over the sources; bodies that are not the JSON we
asked for are classified here too."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bridge.errors import RateLimited, SourceError, SourceMisconfigured, SourceUnavailable
from bridge.retry_after import retry_delay
from bridge.sources.redaction import redact
from bridge.sources.shapes import parse_json

# `errorMessage`: JTL's REST error body (its error guide).
_DETAIL_KEYS = ("description", "message", "errorMessage", "error_description", "error",
                "detail", "title")
_DETAIL_MAX = 200


@dataclass(frozen=True, slots=True)
class Verdict:
    error: type[SourceError]
    hint: str


# What an HTTP status means for a poll. Unlisted 5xx are retryable, other 4xx are permanent.
VERDICTS: Mapping[int, Verdict] = {
    400: Verdict(SourceMisconfigured, "the API rejected the request: check the source settings"),
    401: Verdict(SourceMisconfigured, "the API rejected the credentials: check the credentials"),
    403: Verdict(
        SourceMisconfigured, "access denied: check the credentials and their permissions"
    ),
    404: Verdict(SourceMisconfigured, "not found: check base_url"),
    408: Verdict(SourceUnavailable, "the API timed out"),
    412: Verdict(
        SourceMisconfigured, "precondition failed: missing tenant header: check the source settings"
    ),
    425: Verdict(SourceUnavailable, "the API asked to retry later"),
    429: Verdict(RateLimited, "rate limited: retrying later"),
}
SERVER_ERROR = Verdict(SourceUnavailable, "the API is failing: retrying later")
CLIENT_ERROR = Verdict(
    SourceMisconfigured, "the API refused the request: check the source settings"
)


def decode(raw: bytes, content_type: str, where: str, *, lenient: bool) -> Any:
    """The JSON body of a successful (or accepted) answer; `lenient` gives None instead of
    raising, for accepted error statuses that need not carry JSON."""
    try:
        return parse_json(raw)
    except ValueError as exc:
        if lenient:
            return None
        if not raw.strip():
            raise SourceUnavailable(f"expected JSON, got an empty body ({where})") from None
        if "json" not in content_type:
            raise SourceUnavailable(
                f"expected JSON, got {content_type or 'no content type'} ({where})"
            ) from None
        raise SourceUnavailable(f"malformed JSON: {exc} ({where})") from None


def status_error(
    status: int,
    reason: str,
    raw: bytes,
    headers: Mapping[str, str],
    where: str,
    hints: Mapping[int, str],
    secrets: Collection[str],
) -> SourceError:
    """The typed error for a refused request: the verdict's type, the source's hint (or the
    verdict's), what the API said, and how long it asked us to wait."""
    verdict = VERDICTS.get(status) or (SERVER_ERROR if status >= 500 else CLIENT_ERROR)
    hint = hints.get(status, verdict.hint)
    detail = server_detail(raw, secrets)
    said = f"; the API said {detail!r}" if detail else ""
    retry_after = retry_delay(headers, now=datetime.now(UTC))
    wait = f"; Retry-After {retry_after:g}s" if retry_after is not None else ""
    message = f"{hint} (HTTP {status} {reason} from {where}{said}{wait})".replace(" )", ")")
    error = verdict.error(message, retry_after=retry_after)
    if isinstance(error, RateLimited):
        error.headers = dict(headers)
    return error


def server_detail(raw: bytes, secrets: Collection[str]) -> str | None:
    """A short reason from a JSON error body (`error`, `message`, ...), secrets redacted."""
    try:
        body = parse_json(raw)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    for key in _DETAIL_KEYS:
        value = body.get(key)
        if isinstance(value, dict):
            value = value.get("message")
        if isinstance(value, str) and value.strip():
            return redact(value.strip()[:_DETAIL_MAX], secrets)
    return None
