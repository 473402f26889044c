"""The testing guide's example URL, verbatim, plus the ``ws/<slug:route>`` form its tests use."""

from django.urls import path

from .views import ExampleWebSocketView

urlpatterns = [
    path(
        "ws/",
        ExampleWebSocketView.as_view(),
        name="example_websocket",
    ),
]

urlpatterns += [path("ws/<slug:route>", ExampleWebSocketView.as_view())]
