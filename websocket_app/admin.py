from django.contrib import admin

from .models import ChatMessage, Room


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ("slug", "title", "is_private")
    filter_horizontal = ("members",)


@admin.register(ChatMessage)
class ChatMessageAdmin(admin.ModelAdmin):
    list_display = ("room", "user", "created_on")
    list_filter = ("room",)
