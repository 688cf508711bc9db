"""``python -m zoocompat``: the command line."""

from zoocompat.cli import main

if __name__ == "__main__":
    main()
