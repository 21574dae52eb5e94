"""Demo inputs made here, never copied from a wiki: a small MediaWiki dump (``dump``) and a
short edit history of its pages as change events (``events``). ``feedserver demo``
(``cli/demo.py``) runs the whole embedded pipeline on them."""
