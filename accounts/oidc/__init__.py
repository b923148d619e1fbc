"""The relying party of ProConnect: discovery, token checks, login views, backend."""
