"""The mount's own ACME server (RFC 8555): configuration, accounts, orders, challenges and their validation."""
