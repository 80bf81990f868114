"""Known teacher checkpoints: the registry file (weights.yaml), resolving and verifying them, the `weights` verbs."""
