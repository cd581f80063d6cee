"""`python -m capdsl …`: the same command line as the `capdsl` script."""

from capdsl.tools.launch import main

if __name__ == "__main__":  # pragma: no cover
    main()
