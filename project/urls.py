from django.contrib import admin
from django.urls import include, path

from django_aws_api_gateway_websockets.health import HealthView

urlpatterns = [
    path("admin/", admin.site.urls),
    # zappa's deploy-time status check (touch_path): answers before any migration.
    path("health/", HealthView.as_view(), name="health"),
    path("", include("websocket_app.urls")),
]
