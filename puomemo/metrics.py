"""/metrics: django-prometheus's view, for the clients PUOMEMO_METRICS_ALLOWED_IPS lets in."""

from ipaddress import IPv6Address, ip_address

from django.conf import settings
from django.http import HttpResponseForbidden
from django_prometheus.exports import ExportToDjangoView


def client_allowed(remote_addr: str) -> bool:
    """Whether a client address is in one of the allowed networks (any address when none are set)."""
    networks = settings.PUOMEMO_METRICS_ALLOWED_IPS
    if not networks:
        return True
    try:
        address = ip_address(remote_addr)
    except ValueError:  # no address at all, e.g. a UNIX socket
        return False
    # A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d.
    if isinstance(address, IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def metrics(request):
    """Prometheus metrics, or 403 in plain text for a client outside PUOMEMO_METRICS_ALLOWED_IPS."""
    # REMOTE_ADDR is the proxy's address unless daphne runs with --proxy-headers.
    if not client_allowed(request.META.get("REMOTE_ADDR", "")):
        return HttpResponseForbidden("Forbidden: /metrics is not open to this address.\n", content_type="text/plain")
    return ExportToDjangoView(request)
