"""Errors that mean "the user's input is wrong", printed by the CLI as one line."""


class DataError(Exception):
    """Bad or missing input data; the message names the file and the problem."""
