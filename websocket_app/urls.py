from django.contrib.auth import views as auth_views
from django.urls import path

from django_aws_api_gateway_websockets.views import WebSocketTokenView

from .views import ChatLogoutView, ChatWebSocketView, IndexView, RoomView

urlpatterns = [
    path("", IndexView.as_view(), name="index"),
    path("rooms/<slug:channel>/", RoomView.as_view(), name="room"),
    # The app's own redirects, so it works in a project without LOGIN_REDIRECT_URL.
    path("login/", auth_views.LoginView.as_view(next_page="index"), name="login"),
    path("logout/", ChatLogoutView.as_view(), name="logout"),
    path("api/ws-token/", WebSocketTokenView.as_view(), name="websocket_token"),
    path("ws/", ChatWebSocketView.as_view(), name="websocket"),
    path("ws/<slug:route>", ChatWebSocketView.as_view(), name="websocket_route"),
]
