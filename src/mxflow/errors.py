"""Exceptions shared by all stages."""


class MxflowError(Exception):
    """An error the user can act on; the CLI prints it without a traceback."""


class BadInputError(MxflowError):
    """Input data that cannot be used; the message names the file and the problem."""

    def __init__(self, path: str, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")
