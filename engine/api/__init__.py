"""HTTP-level API of the PKI engine: each module exports `paths(ctx) -> list[Path]`, assembled in engine.backend."""
