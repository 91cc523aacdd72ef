"""Training: the trainer protocol, the built-in trainers (LightGBM, PyTorch, scikit-learn via
ONNX, a torch module of the team's own) and the preprocessing every served version carries.
"""
