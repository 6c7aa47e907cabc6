"""`python -m dp.cli`: the `dp` command."""

from dp.cli import main

main()
