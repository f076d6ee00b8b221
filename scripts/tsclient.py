"""Entry point of ragserve_ops.client (`python scripts/tsclient.py --help`)."""

from ragserve_ops.client import main

if __name__ == "__main__":
    main()
