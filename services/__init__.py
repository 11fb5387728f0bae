"""The portal's services. Each subpackage is independent: it imports only `chassis` and itself."""
