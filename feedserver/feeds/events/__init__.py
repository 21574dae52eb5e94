"""Live change events: the ``consumer`` (input topics -> ``state`` store + article topic) and
its static partition ``membership``."""
