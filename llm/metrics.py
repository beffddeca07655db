from prometheus_client import Counter, Histogram

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)

replies_total = Counter(
    "chat_llm_replies_total",
    "Assistant replies by provider, final status and error code.",
    ["provider", "status", "error_code"],
)
reply_latency_seconds = Histogram(
    "chat_llm_reply_latency_seconds", "Time from provider call to stored reply.", ["provider"], buckets=LATENCY_BUCKETS
)
reply_time_to_first_token_seconds = Histogram(
    "chat_llm_time_to_first_token_seconds",
    "Streaming: time to the first content token.",
    ["provider"],
    buckets=LATENCY_BUCKETS,
)
tokens_total = Counter("chat_llm_tokens_total", "Tokens reported by the provider.", ["provider", "kind"])
