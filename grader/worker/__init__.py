"""The worker: the only code that runs next to student code, inside the sandbox.

Everything in this package crosses the trust boundary, so it must not import the rest of
``grader`` (it is shipped alone, as ``grader_worker``) and must hold no expected outputs.
"""
