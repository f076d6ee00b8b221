"""urllib's opener, less the Authorization header where a redirect leaves the request's origin.

Public names: urlopen. Used by the RAG client inside the LLM worker (api/ragclient.py) and by the ops client, so it
lives in a module the model archives ship (ops/ is left out of them). Stdlib only; no TorchServe imports.
"""

from __future__ import annotations

import urllib.parse
import urllib.request


class _OriginRedirects(urllib.request.HTTPRedirectHandler):
    """urllib's redirects, less the Authorization header where a redirect leaves the request's origin (scheme,
    host, port): urllib copies every header to the next hop, wherever it is (a key sent to a host that never
    issued it)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ANN201 - urllib's signature
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(new.full_url) != _origin(req.full_url):
            new.remove_header("Authorization")  # urllib stores header names capitalize()d
        return new


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    return (
        parts.scheme.lower(),
        (parts.hostname or "").lower(),
        parts.port or {"http": 80, "https": 443}.get(parts.scheme),
    )


urlopen = urllib.request.build_opener(_OriginRedirects).open  # urllib.request.urlopen, keys kept on their origin
