from django.apps import AppConfig


class WebsocketAppConfig(AppConfig):
    name = "websocket_app"
    verbose_name = "Chat example"
    default_auto_field = "django.db.models.BigAutoField"
