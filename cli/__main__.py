"""`python -m cli`: the same program as the installed `nexus-backup` script."""

from cli.main import run

if __name__ == "__main__":
    run()
