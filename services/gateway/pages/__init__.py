"""The portal's HTML pages, one module per area; each imports only the shared plumbing (pages/base.py),
the use cases (usecases.py), forms.py, downloads.py and jsonapi.py, never another page module."""
