"""Grading on GPU hosts: finding the GPUs, giving each job exactly one, timing on the device.

``grader batch --gpus`` uses :mod:`gpu_runner.devices` to find and assign GPUs; the sandboxes pass
exactly the assigned device through (Docker device requests, bwrap device nodes).
"""
