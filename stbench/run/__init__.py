"""Running a method: the method registry, the sandboxed child process and the runner."""
