"""The `synthloom` command line (main.py) and its subcommands."""
