from prometheus_client import Counter, Gauge, Histogram

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

# Replies the user stays in control of: followers, cancels, stored progress, the relay.
reply_followers = Gauge(
    "chat_reply_followers", "Clients attached to a reply's stream right now.", multiprocess_mode="livesum"
)
reply_follows_total = Counter(
    "chat_reply_follows_total", "Attachments to a reply's stream, by how they ended.", ["outcome"]
)
reply_cancels_total = Counter("chat_reply_cancels_total", "Cancel requests, by what happened.", ["outcome"])
reply_progress_writes_total = Counter(
    "chat_reply_progress_writes_total", "Writes of a reply's text while it was generated."
)
reply_progress_bytes_total = Counter(
    "chat_reply_progress_bytes_total", "Characters of reply text written while replies were generated."
)
relay_entries_total = Counter("chat_reply_relay_entries_total", "Entries written to the Redis reply relay.")
relay_dropped_total = Counter(
    "chat_reply_relay_dropped_total", "Relay writes dropped (Redis failing, breaker open or queue full)."
)
relay_errors_total = Counter("chat_reply_relay_errors_total", "Redis reply relay failures.", ["operation"])
