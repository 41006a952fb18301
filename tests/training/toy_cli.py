"""`captionkit` with the toy model registered: what the subprocess tests launch (plain python or torchrun)."""

import sys

import training_toy  # noqa: F401  (registers the toy model, tokenizer and encoder)

from captionkit.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
