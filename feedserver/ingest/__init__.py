"""Dump and event ingestion: pure transforms from MediaWiki sources to Article records."""
