"""The PKI domain: issuers, keys, roles, issuance, revocation. Never imports grpc."""
