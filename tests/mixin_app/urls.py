from django.urls import path

from .views import BlogIndexView, PublicBlogView

urlpatterns = [
    path("blog/", BlogIndexView.as_view()),
    path("public/", PublicBlogView.as_view()),
    path("rooms/<slug:channel>/", BlogIndexView.as_view()),
]
