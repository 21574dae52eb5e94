"""The realtime stream: one reader of the article topic per process (``hub``) fanning out
shared ``items`` to many subscribers."""
