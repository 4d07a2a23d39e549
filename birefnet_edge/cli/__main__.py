"""``python -m birefnet_edge.cli`` (what ``torchrun -m birefnet_edge.cli`` starts)."""

from birefnet_edge.cli import main

main()
