"""`python -m nncli` behaves like the `nncli` command."""

from .cli import main

main()
