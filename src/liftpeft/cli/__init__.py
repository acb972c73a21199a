"""Command-line interface: parses arguments and calls the library; holds no logic of its own."""
