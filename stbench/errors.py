"""Errors with messages a user can act on: each names the file (or method) and the problem."""


class StbenchError(Exception):
    """Base class of every error the harness raises on purpose."""


class DatasetError(StbenchError, ValueError):
    """A dataset file is missing, malformed or violates the dataset contract."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class MethodError(StbenchError, RuntimeError):
    """A method folder is invalid or a method returned an invalid imputation."""

    def __init__(self, method: str, problem: str):
        self.method = method
        self.problem = problem
        super().__init__(f"method '{method}': {problem}")


class ConfigError(StbenchError, ValueError):
    """The workflow configuration names something that does not exist or is inconsistent."""
