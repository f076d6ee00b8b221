"""`python -m ragserve.config` prints the configuration reference (docs/configuration.md holds it)."""

from ragserve.config.reference import reference_markdown

print(reference_markdown())
