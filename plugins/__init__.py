"""molzoo plugins."""
