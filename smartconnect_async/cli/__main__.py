"""``python -m smartconnect_async.cli``."""

from . import main

if __name__ == "__main__":
    main()
