"""Spellings of the guard's open and hidden paths, and a client that sends a request target as written.

The unit tests send them through real uvicorn to a FastAPI app shaped like vLLM's, the security suite to
the real stack. http.client sends the target as written (httpx would resolve dot segments first);
uvicorn decodes the percent-escapes into scope["path"], as it does in Serve's proxy and in a replica's
own HTTP server.
"""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

# Every one reaches vLLM's metrics, or would after a normalising router: each must be 404.
METRICS_SPELLINGS = [
    "/metrics",
    "/metrics/",
    "/metrics/.",
    "/metrics/..",
    "/metrics//",
    "/metrics?x=1",
    "/metrics/?x=1",
    "/metrics%2F",
    "/metrics%2f.",
    "/metrics/%2e",
    "/metrics/%2E%2E",
    "/metrics%3Fx",
    "/metrics;x",
    "/metrics%00",
    "/metrics.txt",
    "/metricsX",
    "/metrics/../v1/models",
    "/%6detrics",
    "/%6Detrics/",
    "//metrics",
    "//metrics/",
    "///metrics",
    "/%2Fmetrics",
    "/./metrics",
    "/./metrics/",
    "/v1/../metrics",
    "/v1/../metrics/",
    "/v1/%2E%2E/metrics",
    "/METRICS",
    "/Metrics/",
]
# Not metrics to the app (uvicorn decodes once, Starlette never): an unknown route, behind the key.
NOT_METRICS_SPELLINGS = ["/%256detrics", "/v1/metrics", "/%5Cmetrics"]
OPEN_SPELLINGS = ["/health", "/health?x=1", "/ping"]
# None of these is routed to a probe, so none may skip the key.
ODD_OPEN_SPELLINGS = [
    "/health/",
    "/health/.",
    "/health/..",
    "/health/../v1/models",
    "/health%2F..%2Fv1%2Fmodels",
    "/health/%2e%2e/v1/models",
    "/health%3F/../v1/models",
    "/health;x",
    "/health%00",
    "/health%20",
    "//health",
    "/./health",
    "/HEALTH",
    "/ping/",
    "/ping/..",
    "/v1/models/../../health",
    "/v1/models?/health",
]


def raw_request(
    base_url: str,
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 30,
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request whose target is sent byte for byte."""
    url = urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=timeout)
    try:
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()
