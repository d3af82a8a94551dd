"""Errors that mean "the user's input is wrong", printed by the CLI as one line."""


class DataError(Exception):
    """Bad or missing input data; the message names the file and the problem.

    The message is kept to one line (whitespace, including the newlines that some library
    errors quoted in it carry, is collapsed), so the CLI's ``benchmark: error: ...`` is one line.
    """

    def __init__(self, message: object = "") -> None:
        super().__init__(" ".join(str(message).split()))
