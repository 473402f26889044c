from django.urls import include, path

from . import support_views as views


def routes(view):
    return [path("", view.as_view()), path("<slug:route>", view.as_view())]


urlpatterns = [
    path("ws/", include(routes(views.EchoView))),
    path("token/", include(routes(views.TokenView))),
    path("listed/", include(routes(views.ListedView))),
    path("pinned/", include(routes(views.PinnedApiView))),
    path("any/", include(routes(views.AnyPermissionView))),
    path("all/", include(routes(views.AllPermissionView))),
    path("both/", include(routes(views.BothPermissionView))),
    path("checked/", include(routes(views.CheckedView))),
    path("refusing/", include(routes(views.RefusingConnectView))),
    path("quiet/", include(routes(views.QuietView))),
    path("small/", include(routes(views.SmallLimitView))),
    path("picky/", include(routes(views.PickyChannelView))),
    path("broken/", include(routes(views.BrokenHooksView))),
    path("", include("project.urls")),
]
