"""The go-plugin host: handshake, AutoMTLS, gRPC services, broker, and clients for the server's services."""
