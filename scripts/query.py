"""Entry point of ragserve_ops.ask (`python scripts/query.py --help`)."""

from ragserve_ops.ask import main

if __name__ == "__main__":
    main()
