"""JSON request bodies that can be stored and answered back, or a 400 before anything is written.

Contract of SafeJSONParser (the API's only parser):
- the body is UTF-8 and JSON (invalid bytes, including encoded surrogates, and syntax errors:
  400 `parse_error`, as DRF answers them);
- it nests arrays and objects at most JSON_MAX_DEPTH levels deep. This is checked on the
  text, before `json.loads` runs, so a 100 KB `[[[[…` costs one linear scan and never
  reaches Python's recursion limit (400 `invalid_json`);
- NaN and Infinity are refused (not JSON; they would not render back): 400 `parse_error`;
- no string or object key holds a lone surrogate (`"\\ud800"` is valid JSON but cannot be
  encoded as UTF-8, so a stored one would make every later answer fail) or a NUL character
  (MongoDB keys cannot hold one, and no client text needs it): 400 `invalid_string` naming the
  field in `param` (`metadata.k`, `content`).
"""

import codecs
import json
import re
from collections.abc import Mapping
from itertools import accumulate
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from core.errors import ApplicationError
from core.text import printable

# Deeper than any valid request needs (metadata is two levels), shallow enough that walking
# a parsed body can never come near the interpreter's recursion limit.
JSON_MAX_DEPTH = 32

_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")
_UNSTORABLE = re.compile("[\ud800-\udfff\x00]")


class InvalidJSON(ApplicationError):
    code = "invalid_json"
    default_message = "The request body is not valid JSON."


class UnstorableString(ApplicationError):
    code = "invalid_string"


def json_nesting_depth(text: str) -> int:
    """How deeply arrays and objects nest in `text`, without parsing it (brackets in strings do not count)."""
    if text.count("[") + text.count("{") <= 1:
        return text.count("[") + text.count("{")
    brackets = _NOT_A_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(1 if char in "[{" else -1 for char in brackets), default=0)


def unstorable_string_path(value: Any) -> tuple[str, str] | None:
    """The path (`metadata.k`, `items[2]`) and reason of the first string that cannot be stored, or None.

    Walks with an explicit stack: the depth is bounded already, but the walk does not rely on it.
    """
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            found = _UNSTORABLE.search(item)
            if found:
                return path, _reason(found.group())
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{path}.{key}" if path else key
                found = _UNSTORABLE.search(key)
                if found:
                    return child_path, _reason(found.group())
                stack.append((child_path, child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{index}]", child) for index, child in enumerate(item))
    return None


def _reason(char: str) -> str:
    if char == "\x00":
        return "contains a NUL character"
    return f"contains a lone surrogate (U+{ord(char):04X}), which is not a Unicode character"


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def parse_json_text(text: str) -> Any:
    """Parse JSON text under the contract above (raises InvalidJSON / UnstorableString)."""
    depth = json_nesting_depth(text)
    if depth > JSON_MAX_DEPTH:
        raise InvalidJSON(f"The request body nests arrays and objects {depth} levels deep; at most {JSON_MAX_DEPTH}.")
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise ParseError(f"JSON parse error - {exc}") from None
    unstorable = unstorable_string_path(data)
    if unstorable is not None:
        path, reason = unstorable
        raise UnstorableString(f"{printable(path) or 'The body'}: the text {reason}.", param=printable(path) or None)
    return data


class SafeJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            # Codecs that are not text encodings (rot13, base64, zlib...) cannot decode a body.
            if not getattr(codecs.lookup(encoding), "_is_text_encoding", True):
                raise LookupError(encoding)
        except LookupError:
            raise ParseError(f"Unknown charset {printable(encoding)!r}.") from None
        raw = stream.read() if stream is not None else b""
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            raise ParseError(f"The request body is not valid {encoding}: {exc.reason} at byte {exc.start}.") from None
        except UnicodeError as exc:
            # Raised by codecs that decode nothing ("undefined") or fail in their own way (punycode).
            raise ParseError(f"The request body cannot be decoded as {printable(encoding)!r}: {exc}.") from None
        return parse_json_text(text)
