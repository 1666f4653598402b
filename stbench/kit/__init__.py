"""The method authors' kit: helpers that methods/<name>/ import (methodkit, diffusion, reference protocol)."""
