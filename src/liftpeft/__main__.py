"""``python -m liftpeft`` runs the command-line tool (the same as the ``liftpeft`` script)."""

from liftpeft.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
