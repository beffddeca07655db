"""Text that can always be encoded in an answer, whatever a client sent or a database holds."""

import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT_CHARACTER = "\ufffd"


def without_surrogates(text: str) -> str:
    """`text` with each lone surrogate (valid in a Python str, not in UTF-8) replaced by U+FFFD."""
    return _SURROGATE.sub(REPLACEMENT_CHARACTER, text)


def printable(text: str, *, max_chars: int = 100) -> str:
    """`text` fit to be quoted in an error message: encodable, and cut short when long."""
    text = without_surrogates(text)
    return text if len(text) <= max_chars else f"{text[:max_chars]}…"


def scrubbed(data: Any) -> Any:
    """A copy of rendered API data with every string made encodable (for rows stored before
    the parser refused lone surrogates). Rendered data is a few levels deep at most."""
    if isinstance(data, str):
        return without_surrogates(data)
    if isinstance(data, dict):
        return {scrubbed(key): scrubbed(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [scrubbed(item) for item in data]
    return data
