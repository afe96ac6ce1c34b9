"""The pruning engine: pure PyTorch + NumPy, no web, no queue.

Reads a `torch.export` program safely, measures per-neuron activation statistics,
selects neurons to remove, cuts them out for real and evaluates every candidate.
"""
