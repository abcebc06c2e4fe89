"""Which proxy a model endpoint's requests go through: the standard environment variables, as curl reads them.

``HTTPS_PROXY`` / ``HTTP_PROXY`` (by the endpoint's scheme), then ``ALL_PROXY``; lower-case names first,
as curl does. ``NO_PROXY`` lists hosts to reach directly: names match themselves and their subdomains
(``example.com`` and ``.example.com`` both match ``api.example.com``), addresses and CIDR blocks match
addresses, an entry may carry a ``:port``, and ``*`` turns proxies off. Loopback hosts (``localhost``,
``127.0.0.0/8``, ``::1``) are always reached directly, as Go's HTTP client does: a local model server
must not go out through a corporate proxy. Upper-case ``HTTP_PROXY`` is ignored when ``REQUEST_METHOD``
is set (a CGI environment, where a client can set it: "httpoxy").

A proxy URL may carry credentials (``http://user:secret@proxy:3128``); messages show it through
:func:`display_url`, which masks them.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from runner.errors import ProviderConfigError

SCHEMES = ("http", "https")
"""Proxy schemes the transports speak (a plain or TLS connection to the proxy, CONNECT for https targets)."""


def display_url(url: str) -> str:
    """``url`` fit for messages: credentials in its user-info part (``https://user:secret@host``) masked."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    if sep and "@" in authority:
        return f"{scheme}://[credentials]@{authority.rpartition('@')[2]}{slash}{path}"
    return url


def _env(environ: Mapping[str, str], name: str, *, cgi_safe: bool = False) -> str | None:
    for key in (name.lower(), name.upper()):
        if cgi_safe and key == "HTTP_PROXY" and "REQUEST_METHOD" in environ:
            continue
        value = environ.get(key)
        if value is not None:
            return value.strip()
    return None


def _host_port(url: str) -> tuple[str, int | None]:
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower().rstrip(".")
    except ValueError:  # not a URL (a malformed [v6] host): no proxy; the request reports the URL itself
        return "", None
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = {"http": 80, "https": 443}.get(parts.scheme.lower())
    return host, port


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    address = _address(host)
    return address is not None and address.is_loopback


def _bypassed(host: str, port: int | None, no_proxy: str) -> bool:
    address = _address(host)
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        entry_port: int | None = None
        if entry.startswith("["):  # [v6]:port
            inside, _, rest = entry[1:].partition("]")
            entry = inside
            if rest.startswith(":") and rest[1:].isdigit():
                entry_port = int(rest[1:])
        elif entry.count(":") == 1:  # name:port or v4:port (a bare v6 address has several colons)
            name, _, maybe_port = entry.partition(":")
            if maybe_port.isdigit():
                entry, entry_port = name, int(maybe_port)
        if entry_port is not None and entry_port != port:
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        entry = entry.lstrip(".").rstrip(".")
        if entry and (host == entry or host.endswith("." + entry)):
            return True
    return False


def proxy_for(url: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The proxy URL for requests to ``url`` (None: connect directly), read from ``environ`` (the process
    environment by default).

    Raises :class:`ProviderConfigError` for a proxy the transports cannot use (a ``socks5://`` one, say),
    naming the variable and never its credentials.
    """

    env = os.environ if environ is None else environ
    scheme = url.partition("://")[0].lower()
    host, port = _host_port(url)
    if scheme not in SCHEMES or not host or is_loopback(host):
        return None
    no_proxy = _env(env, "NO_PROXY")
    if no_proxy and _bypassed(host, port, no_proxy):
        return None
    name = f"{scheme}_proxy"
    value = _env(env, name, cgi_safe=True)
    if not value:
        name, value = "all_proxy", _env(env, "all_proxy")
    if not value:
        return None
    if "://" not in value:
        value = "http://" + value  # curl's default for a bare host:port
    proxy_scheme = value.partition("://")[0].lower()
    if proxy_scheme not in SCHEMES:
        raise ProviderConfigError(
            f"the proxy for {display_url(url)} ({name.upper()}={display_url(value)}) is a {proxy_scheme}:// proxy; "
            "runner speaks to http:// and https:// proxies: set an HTTP proxy, or list the host in NO_PROXY"
        )
    return value
