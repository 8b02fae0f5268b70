"""`python -m postroom` runs the CLI (tests start `serve` this way)."""

from postroom.cli import main

main()
