"""Data in: loading, checking, preprocessing, masking a dataset and building the truth-free task."""
