"""Entry point of ragserve.ops.ask (`python scripts/query.py --help`)."""

from ragserve.ops.ask import main

if __name__ == "__main__":
    main()
