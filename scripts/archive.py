"""Entry point of ragserve.ops.archive (`python scripts/archive.py --help`)."""

from ragserve.ops.archive import main

if __name__ == "__main__":
    main()
