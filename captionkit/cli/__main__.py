"""`python -m captionkit.cli ...` (what `torchrun -m captionkit.cli` runs): the `captionkit` command."""

from captionkit.cli import console

console()
