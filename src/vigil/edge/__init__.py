"""The edge: TLS termination and the middleware every request crosses before the application."""
