"""Settings: no database, no templates, an in-memory channel layer (one process)."""
SECRET_KEY = "c1m-interop-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["channels"]
ASGI_APPLICATION = "actioncable_server.asgi.application"
# The in-memory layer keeps up to `capacity` undelivered messages per connection.
CHANNEL_LAYERS = {
    "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1000}}
}
USE_TZ = True
