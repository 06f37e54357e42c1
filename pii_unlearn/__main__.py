"""``python -m pii_unlearn``: the same CLI as the ``pii-unlearn`` script."""

from pii_unlearn.cli import main

if __name__ == "__main__":
    main()
