"""The ticket endpoint: ``POST /wsguard/ticket/`` (URL name ``wsguard:ticket``).

A logged-in page fetches a one-time ticket with a same-origin, CSRF-protected POST and opens its
socket with ``new WebSocket(url, ["wsguard", "wsguard.ticket." + ticket])``. A foreign page cannot
read the response (CORS), so it cannot get a ticket, whatever cookies the browser attaches.
"""

from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_POST

from .auth import tickets
from .models import validate_path_prefix
from .origins import Origin, parse_origin

MAX_BODY_BYTES = 1024


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": code, "message": message}, status=status)


def _requested_path(request: HttpRequest) -> str | None:
    """The optional ``path`` prefix the ticket is limited to (form field or JSON body)."""
    if request.content_type == "application/json":
        body = request.body[: MAX_BODY_BYTES + 1]
        if not body:
            return ""
        if len(body) > MAX_BODY_BYTES:
            return None
        try:
            data = json.loads(body)
        except ValueError:
            return None
        value = data.get("path", "") if isinstance(data, dict) else None
    else:
        value = request.POST.get("path", "")
    return value if isinstance(value, str) and len(value) <= 200 else None


@never_cache
@csrf_protect
@require_POST
def ticket(request: HttpRequest) -> JsonResponse:
    if not request.user.is_authenticated:
        return _error(401, "auth-required", "Log in first: tickets are minted for a logged-in session.")
    header = request.headers.get("Origin")
    # Browsers send Origin on every POST fetch; an older one may omit it on a same-origin request,
    # whose origin is then this request's own (CSRF middleware has checked Referer/token).
    parsed = parse_origin(header if header is not None else f"{request.scheme}://{request.get_host()}")
    if not isinstance(parsed, Origin):
        return _error(400, str(parsed), "The request's Origin is not one a ticket can be bound to.")
    path = _requested_path(request)
    if path is None:
        return _error(400, "bad-path", 'Send an optional "path" prefix as a form field or JSON, e.g. "/ws/chat/".')
    try:
        validate_path_prefix(path)
    except ValidationError as exc:
        return _error(400, "bad-path", " ".join(exc.messages))
    value, ttl = tickets.mint(
        request.user, origin=parsed.serialize(), session_key=request.session.session_key, path_prefix=path
    )
    return JsonResponse({"ticket": value, "expires_in": ttl})
