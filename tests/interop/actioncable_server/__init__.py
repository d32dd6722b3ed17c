"""A minimal Django project serving Action Cable with PyPI's `django-actioncable` on Django
Channels; run it with ../actioncable_server.py. settings.py configures it, asgi.py is the app."""
