"""Entry point for `python -m gpuwatch`."""

from gpuwatch.cli import main

main()
