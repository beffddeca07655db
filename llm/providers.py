"""Model providers: the OpenAI-compatible one (official `openai` SDK) and the offline one.

Both speak the same small interface, and turn every failure of the provider into a
ProviderError with a ProviderFailure of their own, in words a user can act on. The reply
service (llm/services.py) maps those to the error codes it stores on replies.
"""

import enum
import functools
import hashlib
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import openai
from django.conf import settings

from llm.cancellation import cancellable_http_client

logger = logging.getLogger(__name__)

OFFLINE_MODEL_NAME = "offline-provider"
MAX_RETRY_AFTER_SECONDS = 3600


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: list[dict[str, str]]
    max_tokens: int
    temperature: float | None = None


@dataclass
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


@dataclass
class ChatChunk:
    """A piece of a reply. Non-streamed replies come as one chunk with everything set."""

    delta: str = ""
    model: str = ""
    finish_reason: str = ""
    usage: Usage | None = None


class ProviderFailure(enum.StrEnum):
    """How a provider call failed, in the provider adapter's own terms."""

    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    RATE_LIMITED = "rate_limited"
    ERROR_STATUS = "error_status"
    BAD_RESPONSE = "bad_response"


@dataclass
class ProviderError(Exception):
    failure: ProviderFailure
    message: str
    retry_after_seconds: int | None = None

    def __str__(self) -> str:
        return f"{self.failure}: {self.message}"


class ChatProvider(Protocol):
    name: str

    def chat(self, request: ChatRequest, *, stream: bool) -> Iterator[ChatChunk]:
        """Yield the reply's chunks; raise ProviderError on any failure, also mid-stream."""
        ...


class OpenAICompatibleProvider:
    name = "openai"

    def __init__(self, *, api_key: str, base_url: str | None, max_concurrent_calls: int) -> None:
        self.client = openai.OpenAI(
            # Local servers (Ollama, vLLM, llama.cpp) ignore the key but the SDK wants one.
            api_key=api_key or "not-needed",
            base_url=base_url or None,
            timeout=openai.Timeout(settings.LLM_TIMEOUT_SECONDS, connect=settings.LLM_CONNECT_TIMEOUT_SECONDS),
            max_retries=settings.LLM_MAX_RETRIES,
            # Connections that a cancel request can cut while a call reads them (llm/cancellation.py).
            # One call holds one connection of this pool until its reply (or stream) ends, so
            # the pool's size bounds this process's calls in flight: a burst beyond it waits
            # for a free connection (at most the read timeout, then upstream_timeout)
            # instead of opening ever more connections to the provider.
            http_client=cancellable_http_client(max_connections=max_concurrent_calls),
        )

    def chat(self, request: ChatRequest, *, stream: bool) -> Iterator[ChatChunk]:
        options: dict[str, Any] = {
            "model": request.model,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
        }
        if request.temperature is not None:
            options["temperature"] = request.temperature
        try:
            if stream:
                yield from self._stream(options)
            else:
                yield self._complete(options)
        except openai.APITimeoutError as exc:
            raise ProviderError(
                ProviderFailure.TIMEOUT,
                f"the model provider did not answer within {settings.LLM_TIMEOUT_SECONDS:g} seconds",
            ) from exc
        except openai.APIConnectionError as exc:
            raise ProviderError(ProviderFailure.UNREACHABLE, "the model provider could not be reached") from exc
        except openai.RateLimitError as exc:
            raise ProviderError(
                ProviderFailure.RATE_LIMITED,
                "the model provider is rate limiting requests",
                retry_after_seconds=retry_after_seconds(exc.response.headers.get("retry-after")),
            ) from exc
        except openai.APIStatusError as exc:
            raise ProviderError(
                ProviderFailure.ERROR_STATUS,
                f"the model provider answered HTTP {exc.status_code}: {_short(exc.message)}",
            ) from exc
        except openai.APIResponseValidationError as exc:
            raise ProviderError(ProviderFailure.BAD_RESPONSE, "the model provider's answer was malformed") from exc
        except (openai.APIError, json.JSONDecodeError) as exc:
            # The SDK raises json's decoding error for a body that is not JSON. Anything
            # else (KeyError, TypeError...) is our bug: it propagates, is logged with its
            # traceback and stored as internal_error, never filed as the provider's fault.
            logger.warning("unreadable answer from the model provider", exc_info=True)
            raise ProviderError(
                ProviderFailure.BAD_RESPONSE,
                f"the model provider's answer could not be read: {_short(str(exc))}",
            ) from exc

    # The SDK sends every call (auth, retries, timeouts, status errors, the event-stream
    # decoding) but hands the answer over as decoded JSON (`cast_to=object`), read here with
    # shape checks, instead of checking the request against its typed parameters and building
    # its models: that cost 4 ms of CPU per call with a 12-message history, 120 µs per
    # streamed chunk (bench/README.md, "Where a reply's CPU goes").
    def _complete(self, options: dict[str, Any]) -> ChatChunk:
        return completion_read(self.client.post("/chat/completions", body=options, cast_to=object), options["model"])

    def _stream(self, options: dict[str, Any]) -> Iterator[ChatChunk]:
        stream = self.client.post(
            "/chat/completions",
            body={**options, "stream": True, "stream_options": {"include_usage": True}},
            cast_to=object,
            stream=True,
            stream_cls=openai.Stream[object],
        )
        with stream:
            for event in stream:
                yield stream_chunk_read(event)


def completion_read(answer: Any, requested_model: str) -> ChatChunk:
    """A chat completion (decoded JSON) as one ChatChunk; ProviderError if it is not one."""
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise ProviderError(ProviderFailure.BAD_RESPONSE, "the model provider's answer had no choices")
    choice = choices[0]
    message = choice.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        raise ProviderError(ProviderFailure.BAD_RESPONSE, "the model provider's answer had no content")
    model = answer.get("model")
    finish_reason = choice.get("finish_reason")
    return ChatChunk(
        delta=content,
        model=model if isinstance(model, str) and model else requested_model,
        finish_reason=finish_reason if isinstance(finish_reason, str) else "",
        usage=_usage_read(answer.get("usage")),
    )


def _usage_read(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    return Usage(*(_optional_count(usage.get(name)) for name in ("prompt_tokens", "completion_tokens", "total_tokens")))


def stream_chunk_read(event: Any) -> ChatChunk:
    """A chat-completion chunk (decoded JSON) as a ChatChunk; ProviderError if it is not one."""
    if not isinstance(event, dict):
        raise _malformed_chunk("it is not an object")
    chunk = ChatChunk(model=_optional_text(event.get("model"), "model"))
    choices = event.get("choices")
    if choices:
        if not isinstance(choices, list) or not isinstance(choices[0], dict):
            raise _malformed_chunk("its choices are not a list of objects")
        choice = choices[0]
        delta = choice.get("delta") or {}
        if not isinstance(delta, dict):
            raise _malformed_chunk("its delta is not an object")
        chunk.delta = _optional_text(delta.get("content"), "content")
        chunk.finish_reason = _optional_text(choice.get("finish_reason"), "finish_reason")
    usage = event.get("usage")
    if usage:
        if not isinstance(usage, dict):
            raise _malformed_chunk("its usage is not an object")
        chunk.usage = _usage_read(usage)
    return chunk


def _optional_text(value: Any, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _malformed_chunk(f"its {name} is not a string")
    return value


def _optional_count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _malformed_chunk(why: str) -> ProviderError:
    return ProviderError(ProviderFailure.BAD_RESPONSE, f"the model provider's stream sent a chunk that {why}")


class OfflineProvider:
    """Answers without any model, so the service can be tried with no key and no network.

    Deterministic: the same conversation gets the same reply. Its model name and its text
    say plainly that no model wrote it.
    """

    name = "offline"
    chunk_delay_seconds = 0.0

    def chat(self, request: ChatRequest, *, stream: bool) -> Iterator[ChatChunk]:
        last_user = next((m["content"] for m in reversed(request.messages) if m["role"] == "user"), "")
        digest = hashlib.sha256(last_user.encode()).hexdigest()[:8]
        text = (
            "[offline provider] No language model is configured on this server, so this reply "
            "was written by the built-in offline provider, not by a model. "
            f"You said ({len(last_user)} characters, fingerprint {digest}): {_short(last_user, 200)}"
        )
        words = text.split(" ")
        pieces = [word + " " for word in words[:-1]] + [words[-1]] if stream else [text]
        budget_chars = request.max_tokens * 4
        sent = 0
        finish_reason = "stop"
        for piece in pieces:
            if sent + len(piece) > budget_chars:
                piece = piece[: budget_chars - sent]
                finish_reason = "length"
            sent += len(piece)
            if piece:
                yield ChatChunk(delta=piece, model=OFFLINE_MODEL_NAME)
            if finish_reason == "length":
                break
            if self.chunk_delay_seconds:
                time.sleep(self.chunk_delay_seconds)
        prompt_tokens = sum(len(m["content"]) for m in request.messages) // 4 + 1
        completion_tokens = sent // 4 + 1
        yield ChatChunk(
            model=OFFLINE_MODEL_NAME,
            finish_reason=finish_reason,
            usage=Usage(prompt_tokens, completion_tokens, prompt_tokens + completion_tokens),
        )


def retry_after_seconds(header: str | None) -> int | None:
    """A Retry-After header (seconds or an HTTP date) as whole seconds from now, at most an hour."""
    if not header:
        return None
    try:
        seconds = float(header)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(header) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            return None
    return min(max(math.ceil(seconds), 1), MAX_RETRY_AFTER_SECONDS)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@functools.lru_cache(maxsize=8)
def _provider(
    choice: str, api_key: str, base_url: str, timeout: float, connect: float, retries: int, max_concurrent_calls: int
) -> ChatProvider:
    configured = bool(api_key or base_url)
    if choice == "offline" or (choice == "auto" and not configured):
        return OfflineProvider()
    if choice in ("openai", "auto"):
        return OpenAICompatibleProvider(api_key=api_key, base_url=base_url, max_concurrent_calls=max_concurrent_calls)
    raise ValueError(f"LLM_PROVIDER must be auto, openai or offline, not {choice!r}")


def provider_get() -> ChatProvider:
    """The configured provider, built once per configuration and process (its HTTP client pools connections)."""
    return _provider(
        settings.LLM_PROVIDER,
        settings.OPENAI_API_KEY,
        settings.OPENAI_BASE_URL,
        settings.LLM_TIMEOUT_SECONDS,
        settings.LLM_CONNECT_TIMEOUT_SECONDS,
        settings.LLM_MAX_RETRIES,
        settings.LLM_MAX_CONCURRENT_CALLS,
    )
