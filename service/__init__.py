"""The HTTP service: FastAPI app, upload handling and the `deadweight` CLI.

Never imports torch or the `pruning` engine: inspection and pruning run in the workers.
"""
