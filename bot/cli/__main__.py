"""`python -m bot.cli`: the `cda-bot` command without the installed script (tests, containers)."""

from bot.cli import main

if __name__ == "__main__":
    main()
