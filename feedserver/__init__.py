"""feedserver: versioned, metered feeds of MediaWiki content."""

__version__ = "0.1.0"
