"""The ``mlff`` command: thin subcommands over the library."""
