"""The device side of cofc: loads a bundle and serves it over ZeroMQ.

Imports numpy, pyzmq and one backend (ONNX Runtime or TensorRT), never torch, timm or
transformers: edge devices run JetPack's TensorRT and numpy, not the training stack.
The serving code arrives with the runtime issue; this package holds the boundary now so that
everything added to it is checked against it (tests/test_layout.py).
"""
