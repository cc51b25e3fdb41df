"""``python -m qcompress``: the same as the ``qcompress`` command."""

from qcompress.entry import main

main()
