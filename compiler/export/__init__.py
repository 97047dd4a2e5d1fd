"""From calibrated torch modules to what ships: ONNX graphs, INT8 calibration inputs, bundles."""
