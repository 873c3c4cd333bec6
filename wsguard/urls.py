"""``path("wsguard/", include("wsguard.urls"))`` gives ``POST /wsguard/ticket/`` (``wsguard:ticket``)."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "wsguard"

urlpatterns = [
    path("ticket/", views.ticket, name="ticket"),
]
