"""``python -m router`` runs the command line."""

from router.ops.cli import main

main()
