"""A plugin module that fails on import: reported, never fatal to the others."""

raise RuntimeError("this plugin is broken on purpose")
