"""Bounded hub requests: every huggingface_hub request gets a connect and a read timeout, and
connection failures are retried with backoff, so a hub that is down, or that accepts connections
and never answers, ends in one line naming the endpoint instead of a hang.

huggingface_hub's default client has no timeout of its own (its calls pass one only for some
requests), so the client it shares is built here (``set_client_factory``, its documented hook) from
its default one, adding the bounds. The read timeout is huggingface_hub's own setting
``HF_HUB_DOWNLOAD_TIMEOUT`` (default 10 s), the connect timeout ``HF_HUB_ETAG_TIMEOUT``.
"""

from __future__ import annotations

CONNECT_RETRIES = 3  # httpx's transport retries failed connections with exponential backoff (0.5 s, 1 s, 2 s)
_configured = False


def bound_hub_requests() -> None:
    """Install the bounded client for every later huggingface_hub (and datasets) request; idempotent."""
    global _configured
    if _configured:
        return
    import huggingface_hub

    huggingface_hub.set_client_factory(_bounded_client)
    _configured = True


def _bounded_client():
    import httpx2
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
                           transport=httpx2.HTTPTransport(retries=CONNECT_RETRIES))
    default.close()
    return client
