"""Prometheus metrics of the real-time layer, served at /metrics with django-prometheus's."""

from prometheus_client import Counter, Gauge

connections = Gauge(
    "puomemo_websocket_connections",
    "Open WebSocket connections in this process (in this serve, summed over its workers)",
    multiprocess_mode="livesum",
)
messages_sent = Counter("puomemo_websocket_messages_sent", "Frames sent to WebSocket clients")
messages_received = Counter("puomemo_websocket_messages_received", "Frames received from WebSocket clients")
closes = Counter("puomemo_websocket_closes", "WebSocket closes by close code", ["code"])
publish_failures = Counter(
    "puomemo_publish_failures", "Events that could not be published to the channel layer (Redis down)", ["event"]
)
