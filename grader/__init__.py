"""Sandboxed autograder for PyTorch tutorial exercises."""

__version__ = "0.1.0"
