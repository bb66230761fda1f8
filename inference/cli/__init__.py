"""python -m inference: the command line, one module per command group."""
