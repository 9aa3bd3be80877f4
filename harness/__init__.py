"""harness: a load-generation benchmark harness for Python concurrency backends."""

__version__ = "0.1.0"
