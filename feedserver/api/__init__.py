"""The litestar HTTP edge."""
