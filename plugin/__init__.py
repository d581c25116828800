"""The Vault side of python-pki: plugin host, path framework, request translation."""
