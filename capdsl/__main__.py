"""`python -m capdsl …`: the same command line as the `capdsl` script."""

from .cli import main

if __name__ == "__main__":  # pragma: no cover
    main(prog_name="capdsl")
