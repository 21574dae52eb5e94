"""Customers, users, plans, API keys and tokens."""
