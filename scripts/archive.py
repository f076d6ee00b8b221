"""Entry point of ragserve_ops.archive (`python scripts/archive.py --help`)."""

from ragserve_ops.archive import main

if __name__ == "__main__":
    main()
