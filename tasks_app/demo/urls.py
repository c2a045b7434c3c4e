from django.urls import path

from tasks_app.demo import views

urlpatterns = [
    path("", views.home, name="demo-home"),
    path("contact", views.contact, name="demo-contact"),
    path("catalog", views.catalog, name="demo-catalog"),
    path("products", views.products, name="demo-products"),
    path("control/", views.control, name="demo-control"),
    path("panel/", views.panel, name="demo-panel"),
]
