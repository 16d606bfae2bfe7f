"""`python -m matokit` behaves like the `matokit` executable."""

from matokit.cli import main

if __name__ == "__main__":
    main()
