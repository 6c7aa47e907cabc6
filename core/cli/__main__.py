"""`python -m dp.cli`: the `dp` command (the `dp` script is the same command)."""

from dp.cli import main

if __name__ == "__main__":
    main()
