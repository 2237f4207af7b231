"""The names of the selection rules (kept light: the command line imports it for --help)."""

RULES = ("one-se", "tolerance", "knee")
