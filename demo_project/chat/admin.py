from __future__ import annotations

from django.contrib import admin

from .models import Message, Room


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ("title", "slug")
    prepopulated_fields = {"slug": ("title",)}


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("created_at", "room", "author", "text")
    list_filter = ("room",)
    search_fields = ("text", "author__username")
    raw_id_fields = ("author",)
