"""What each service offers the others: the types of its contracts (and its RPCs' stubs), readable in
one file per service. Any service, the gateway and the tools may import this package; it imports no
service, so the services stay independent of each other (the import contracts in pyproject.toml)."""
