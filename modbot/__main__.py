"""``python -m modbot`` runs the command line."""

from modbot.cli import main

main()
