"""stbench: the reference benchmark harness for spatial-transcriptomics imputation."""

from stbench.errors import DatasetError, MethodError, ConfigError

__all__ = ["DatasetError", "MethodError", "ConfigError"]
__version__ = "0.1.0"
