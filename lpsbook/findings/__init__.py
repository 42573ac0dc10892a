"""What the experiments show: claims and their verdicts, analyses of weights, alignment of filters, worked
demonstrations. Imports from the folders above in this list: core, training, methods, protocols."""
