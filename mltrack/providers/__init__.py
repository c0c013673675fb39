"""Provider adapters: turn SDK objects (and dicts shaped like them) into normalized usage, text and model.

Each provider's field names live only in its own module; everything else goes through ``_registry``.
"""
