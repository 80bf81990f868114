"""The one-command shrink pipeline: data, prune, distill, export, quantize, build, measure, report."""
