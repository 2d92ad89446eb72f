"""Bounded hub requests: every huggingface_hub request gets a connect and a read timeout, and both
failed connections and answers that did not come in time are retried with backoff, so a hub that
is down, slow for a moment, or that accepts connections and never answers, ends in one line naming
the endpoint instead of a hang.

huggingface_hub's default client has no timeout of its own (its calls pass one only for some
requests), so the client it shares is built here (``set_client_factory``, its documented hook) from
its default one, adding the bounds. The read timeout is huggingface_hub's own setting
``HF_HUB_DOWNLOAD_TIMEOUT`` (default 10 s), the connect timeout ``HF_HUB_ETAG_TIMEOUT``.
"""

from __future__ import annotations

import time

import httpx2  # huggingface_hub's HTTP client library, imported with it anyway

CONNECT_RETRIES = 3  # httpx's transport retries failed connections with backoff (at once, then after 0.5 s and 1 s)
READ_RETRY_DELAYS = (0.5, 1.0)  # seconds before each new attempt of a request whose answer timed out
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})  # sent again without harm; an upload is not
_configured = False


def bound_hub_requests() -> None:
    """Install the bounded client for every later huggingface_hub (and datasets) request; idempotent."""
    global _configured
    if _configured:
        return
    import huggingface_hub

    huggingface_hub.set_client_factory(bounded_client)
    _configured = True


class RetryingTransport(httpx2.HTTPTransport):
    """httpx's transport (with its connection retries) that also sends an idempotent request again when
    its answer did not begin within the read timeout. A body that stalls later, mid-download, is left
    to huggingface_hub, which resumes downloads itself."""

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        delays = iter(READ_RETRY_DELAYS if request.method in IDEMPOTENT else ())
        while True:
            try:
                return super().handle_request(request)
            except httpx2.ReadTimeout:
                delay = next(delays, None)
                if delay is None:
                    raise
                time.sleep(delay)


def bounded_client() -> httpx2.Client:
    """huggingface_hub's default client with timeouts on every request and the retrying transport."""
    from huggingface_hub import constants
    from huggingface_hub.utils import _http  # the default factory set_client_factory replaces: kept, wrapped

    default = _http.default_client_factory()
    timeout = httpx2.Timeout(constants.HF_HUB_DOWNLOAD_TIMEOUT, connect=constants.HF_HUB_ETAG_TIMEOUT)

    def fill_timeouts(request) -> None:  # a request made with timeout=None would otherwise wait forever
        given = request.extensions.get("timeout") or {}
        request.extensions["timeout"] = {**timeout.as_dict(),
                                         **{key: value for key, value in given.items() if value is not None}}

    hooks = default.event_hooks
    client = httpx2.Client(event_hooks={**hooks, "request": [*hooks.get("request", []), fill_timeouts]},
                           follow_redirects=True, timeout=timeout,
                           transport=RetryingTransport(retries=CONNECT_RETRIES))
    default.close()
    return client
