"""The versioned REST API: one NinjaAPI, with each app's router mounted under /api/v1/."""

from ninja import NinjaAPI

api = NinjaAPI(title="Anchor API", version="1", urls_namespace="api-v1")
