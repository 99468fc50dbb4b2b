"""consultbook's engine: domain, store, services, Shopify trust boundary, tasks and plugins."""

__version__ = "0.1.0"

from engine.hookspecs import hookimpl

__all__ = ["__version__", "hookimpl"]
