from tests.e2e.harness import glimpse, server, world

__all__ = ["glimpse", "server", "world"]
