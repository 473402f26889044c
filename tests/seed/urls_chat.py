from django.urls import path

from .views import ChatWebSocketView

urlpatterns = [
    path("ws/", ChatWebSocketView.as_view()),
    path("ws/<slug:route>", ChatWebSocketView.as_view()),
]
