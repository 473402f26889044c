"""Only ``path("ws/", ...)``: with Lambda delivery the route comes from the event."""

from django.urls import path

from websocket_app.views import ChatWebSocketView

urlpatterns = [path("ws/", ChatWebSocketView.as_view())]
