from __future__ import annotations

from django.urls import path

from . import views

app_name = "chat"
urlpatterns = [
    path("", views.room_list, name="rooms"),
    path("rooms/<slug:slug>/", views.room, name="room"),
]
