"""Dataset helpers: generated datasets for offline quickstarts, dataset YAML utilities."""
