"""Which hosts a task may reach: the one set of rules for agents, the safety gate and validation runs.

Pure Python (no Django): the runner's own navigation guard lives in the sandbox and does not import this.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

# Letters, digits, dots, hyphens and underscores (docker-compose service names have them); IPv6 is checked apart.
_HOST_CHARS = re.compile(r"[a-z0-9._-]+")
_URL_IN_TEXT = re.compile(r"https?://[^\s'\"<>)]+")
_DOMAIN_IN_TEXT = re.compile(r"\b((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24})\b", re.I)
_UNSAFE_IN_URL = re.compile(r"[\\\s\x00-\x1f]")


def hosts_of(urls: Iterable[object]) -> list[str]:
    """The hosts of the http(s) URLs among `urls` (params values, trace URLs), first seen first, once each."""
    hosts: list[str] = []
    for value in urls:
        if not (isinstance(value, str) and value.startswith(("http://", "https://"))):
            continue
        try:
            host = (urlsplit(value).hostname or "").rstrip(".")
        except ValueError:
            continue
        if host and host not in hosts:
            hosts.append(host)
    return hosts


def host_allowed(host: str, allowed: Iterable[str]) -> bool:
    """`shop.example` allows itself and its subdomains; `*.shop.example` means the same."""
    host = host.rstrip(".").lower()
    for domain in allowed:
        domain = domain.strip().lower().removeprefix("*.").rstrip(".")
        if domain and (host == domain or host.endswith("." + domain)):
            return True
    return False


def url_allowed(url: str, allowed: Iterable[str]) -> bool:
    """An http(s) URL to an allowed host, with nothing that could make two parsers disagree on the host:
    no userinfo (`https://shop.example@evil.example`), backslashes, whitespace or control characters."""
    if _UNSAFE_IN_URL.search(url):
        return False
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError:
        return False
    if parts.scheme.lower() not in {"http", "https"} or not host or "@" in parts.netloc:
        return False
    return bool(_HOST_CHARS.fullmatch(host) or _is_ipv6(host)) and host_allowed(host, allowed)


def _is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


def on_sites(url: str, allowed: Iterable[str]) -> bool:
    """Where an agent may be or go: an allowed http(s) URL, or the blank page a run starts on."""
    return url in ("", "about:blank") or url_allowed(url, allowed)


def start_url(params: dict, prompt: str) -> str | None:
    """Where a task starts: its base_url, another URL among its params, or a URL or domain its prompt names."""
    if isinstance(params.get("base_url"), str) and params["base_url"].startswith(("http://", "https://")):
        return params["base_url"]
    for value in params.values():
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            return value
    if match := _URL_IN_TEXT.search(prompt):
        return match.group(0).rstrip(".,;")
    if match := _DOMAIN_IN_TEXT.search(prompt):
        return f"https://{match.group(1).lower()}/"
    return None
