"""Pages of the demo chat. Sign-in and sign-out are Django's own auth views."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie

from .models import MAX_MESSAGE_CHARS, Room


def _hostile_url() -> str:
    return getattr(settings, "DEMO_HOSTILE_URL", "")


@login_required
def room_list(request: HttpRequest) -> HttpResponse:
    return render(request, "chat/room_list.html", {"rooms": Room.objects.all(), "hostile_url": _hostile_url()})


@login_required
@ensure_csrf_cookie
def room(request: HttpRequest, slug: str) -> HttpResponse:
    found = Room.objects.filter(slug=slug).first()
    if found is None:
        raise Http404("No such room.")
    config = {
        "room": found.slug,
        "socketPath": f"/ws/chat/{found.slug}/",
        "ticketUrl": reverse("wsguard:ticket"),
        "maxChars": MAX_MESSAGE_CHARS,
    }
    return render(request, "chat/room.html", {"room": found, "config": config, "hostile_url": _hostile_url()})
