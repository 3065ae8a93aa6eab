"""The editor's front door: an ASGI middleware that checks every request before routing.

1. Host: only names of this machine (localhost, 127.0.0.1, [::1]) and those the server was told
   to answer to, so a page on another site cannot reach the API through DNS rebinding.
2. Origin, when a browser sends one: this server's own origin, the scheme, host and port the
   request came in on, so no other page, not even one served by another port of this machine,
   can post forms or scripts to the API (cross-site request forgery).
3. Body size: multipart uploads up to ``upload_bytes`` (plus room for the form's own headers),
   everything else up to ``json_bytes``. Content-Length is checked before any byte is read, and
   the bytes are counted as they arrive, so an oversized body is refused before it is spooled
   or parsed, whatever its declared length.
4. JSON values: any other body may hold at most ``json_values``, counted as its commas and
   opening brackets as it arrives. Parsing costs time per value (a 1 MB body of ``[]`` takes
   0.3-0.5 s) and holds the GIL, so a worker thread would block the event loop just as long;
   bounding the count before parsing bounds that time.

Refusals are JSON ``{"error": ...}``: 403 for a foreign Host or Origin, 413 for a large body.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
FORM_OVERHEAD = 64 * 1024  # multipart boundaries and part headers around the uploaded file


DEFAULT_PORTS = {"http": 80, "https": 443}


def hostname(value: str) -> str | None:
    """The lower-case host name of a Host header or an origin URL ('[::1]:8000' -> '::1')."""
    try:
        return urlsplit(value if "://" in value else f"//{value}").hostname
    except ValueError:
        return None


def origin_of(value: str, scheme: str | None = None) -> tuple[str, str, int] | None:
    """(scheme, host name, port) of an origin URL, or of a Host header when ``scheme`` (the
    request's) is given; the port defaults to the scheme's (80, 443). None if unparsable or
    not http(s), e.g. the 'null' origin of a sandboxed page or a file.
    """
    try:
        url = urlsplit(f"{scheme}://{value}" if scheme else value)
        port = url.port
    except ValueError:
        return None
    if url.scheme not in DEFAULT_PORTS or not url.hostname:
        return None
    return url.scheme, url.hostname, port or DEFAULT_PORTS[url.scheme]


class Guard:
    """Wraps ``app``; ``hosts``: extra host names to accept besides LOCAL_HOSTS;
    ``upload_message``: the 413 message for an upload over ``upload_bytes``. Origin must be the
    request's own (scheme, Host and its port)."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str], upload_bytes: int, json_bytes: int,
                 json_values: int, upload_message: str) -> None:
        self.app = app
        self.hosts = LOCAL_HOSTS | {h.lower().strip("[]") for h in hosts}
        self.upload_bytes, self.json_bytes, self.json_values = upload_bytes, json_bytes, json_values
        self.upload_message = upload_message

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host, origin = headers.get("host", ""), headers.get("origin")
        if hostname(host) not in self.hosts:
            await _refuse(scope, receive, send, 403,
                          f"This server answers to {', '.join(sorted(self.hosts))} only, not "
                          f"Host {host[:100]!r}; open it as http://127.0.0.1:PORT or start it "
                          "with --allow-host NAME.")
            return
        own = origin_of(host, scope.get("scheme", "http"))
        if origin is not None and (own is None or origin_of(origin) != own):
            await _refuse(scope, receive, send, 403,
                          f"Requests from pages of {origin[:100]!r} are refused; use the editor "
                          "page this server serves.")
            return
        upload = headers.get("content-type", "").startswith("multipart/")
        limit = self.upload_bytes + FORM_OVERHEAD if upload else self.json_bytes
        message = (self.upload_message if upload else
                   f"The request body is over {self.json_bytes // 1024} KB; send fewer points.")
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            await _refuse(scope, receive, send, 413, message)
            return
        await self._counted(scope, receive, send, limit, message,
                            None if upload else self.json_values)

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: int,
                       message: str, values: int | None) -> None:
        """Run the app, ending the body early (as a disconnect) once it passes ``limit`` bytes
        or, unless ``values`` is None, holds over ``values`` JSON values, and answer 413 in
        place of whatever the app made of the cut body."""
        seen, counted, over, started = 0, 0, False, False

        async def counted_receive() -> Message:
            nonlocal seen, counted, over, message
            if over:
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg["type"] == "http.request":
                chunk = msg.get("body", b"")
                seen += len(chunk)
                if seen > limit:
                    over = True
                elif values is not None:
                    counted += chunk.count(b",") + chunk.count(b"[") + chunk.count(b"{")
                    if counted > values:
                        over, message = True, (f"The request body holds over {values:,} JSON "
                                               "values; send fewer points.")
                if over:
                    return {"type": "http.disconnect"}
            return msg

        async def guarded_send(msg: Message) -> None:
            nonlocal started
            if over:
                return  # the app's answer to a cut body; the 413 goes out instead
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not over:
                raise
        if over and not started:
            await _refuse(scope, receive, send, 413, message)


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, error: str) -> None:
    await JSONResponse({"error": error}, status_code=status)(scope, receive, send)
