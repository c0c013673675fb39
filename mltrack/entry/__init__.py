"""Entry points: the decorator, the context manager and the tracker. They gather calls, the engine does the rest."""
