"""Training: losses and the three-stage trainer (T-Net, M-Net, end-to-end)."""
