"""qcompress's first-party plugins. Each module is registered through the ``qcompress``
entry-point group in pyproject.toml, exactly as a third-party plugin would be."""
