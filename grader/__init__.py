"""Sandboxed autograder for PyTorch tutorial exercises."""

__version__ = "0.2.0"
