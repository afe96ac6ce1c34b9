"""The system of record shared by the API and the workers: job states, records, stores, settings.

Imports neither FastAPI nor torch.
"""
