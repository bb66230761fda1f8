"""The 3rd-place members' architectures in PyTorch, as they were trained (checkpoints load strictly)."""
