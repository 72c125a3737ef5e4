from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="reports:page"), name="home"),
    # Browsers ask every page's site for /favicon.ico (the admin's pages name none): the app's icon.
    path("favicon.ico", RedirectView.as_view(url=static("reports/favicon.svg"), permanent=True)),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("", include("reports.urls")),
    path("", include("notifications.urls")),
]
