"""Entry point of ragserve.ops.client (`python scripts/tsclient.py --help`)."""

from ragserve.ops.client import main

if __name__ == "__main__":
    main()
