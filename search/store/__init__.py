"""The experiment folder: its files (run.json, race.json, status.json, the tables, the lock,
Ray Tune's state) and their readers and writers. Imports no ray at import time."""
