"""Grading a whole class: ``grader batch`` plans one job per submission, runs them on this host
(a pool of grader processes, one per GPU where there are GPUs) or on a Ray cluster, and keeps a
resumable output folder (see :mod:`grader.batch.store`)."""
