"""Errors the CLI maps to exit codes in one place (see cli.py)."""


class HarnessError(Exception):
    """Bad input or an impossible request: one line for the user, exit status 2."""

    exit_code = 2


class ScenarioError(HarnessError):
    """A scenario file that cannot be read or does not validate: `file: field.path: problem`."""

    def __init__(self, path: str, field: str, problem: str):
        self.path, self.field, self.problem = path, field, problem
        where = f"{path}: {field}: " if field else f"{path}: "
        super().__init__(where + problem)
