"""Training side of parcel-monitor's models (PyTorch; install the `train` extra).

One module per architecture (`practices`, `heterogeneity`, `cloud_removal`), each citing its
method, and one `<name>_training` module per model implementing the `ModelRecipe` interface of
`models.registry`: build a dataset from simulated seasons, train, export to ONNX (shipped in
`monitor/artifacts/` with its model card), evaluate against the baselines. The runtime package
(`monitor`) never imports this package or torch.
"""
