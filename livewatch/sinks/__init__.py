"""Built-in plugins of this kind; each module registers through livewatch.hookspecs."""
