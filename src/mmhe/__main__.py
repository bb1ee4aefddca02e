"""`python -m mmhe`: the `mmhe` command."""

from mmhe.cli import main

main()
