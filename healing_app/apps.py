from django.apps import AppConfig


class HealingAppConfig(AppConfig):
    name = "healing_app"
    verbose_name = "Self-healing"
