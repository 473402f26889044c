from django.contrib.auth import views as auth_views
from django.urls import path

from django_aws_api_gateway_websockets.views import WebSocketTokenView

from .views import ChatWebSocketView, IndexView, RoomView

urlpatterns = [
    path("", IndexView.as_view(), name="index"),
    path("rooms/<slug:channel>/", RoomView.as_view(), name="room"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/ws-token/", WebSocketTokenView.as_view(), name="websocket_token"),
    path("ws/", ChatWebSocketView.as_view(), name="websocket"),
    path("ws/<slug:route>", ChatWebSocketView.as_view(), name="websocket_route"),
]
