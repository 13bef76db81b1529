"""lifecycle: email lifecycle campaigns for small online shops."""

__version__ = "0.1.0"
