"""``python -m birefnet_edge``: the ``birefnet-edge`` command line."""

from birefnet_edge.cli import main

main()
