"""The built-in inference runtimes of the ``i3d`` classifier, each a plugin (``register_backends``)."""
