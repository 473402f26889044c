from django.views.generic import TemplateView

from django_aws_api_gateway_websockets.mixins import AppChannelWebSocketMixin


class BlogIndexView(AppChannelWebSocketMixin, TemplateView):
    template_name = "mixin_app/index.html"


class PublicBlogView(BlogIndexView):
    app_channel_override = "public_blog"
