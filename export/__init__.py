"""PyTorch members -> verified ONNX -> TensorRT engines. The only package that imports torch.

Depends on :mod:`inference` (engine interface, manifest); :mod:`inference` never imports it.
Nothing here runs on import; torch, timm and TensorRT are imported by the modules that need them.

* ``registry``: arch name -> builder, kind, input channels, stride; ``module:function`` archs.
* ``layers``, ``encoders3d``, ``encoders2d``: the members (3D encoders in plain torch, 2D from timm),
  one FPN-like neck and a 1-channel head at stride 16.
* ``checkpoints``: plain / Lightning / EMA checkpoints, strict loading with a readable diff, sha256.
* ``onnx_export``: one member -> ONNX (checker, metadata, ONNX Runtime parity); ``manifest_export``:
  every member of a manifest.
* ``tensorrt``: ONNX -> TensorRT 10 engine + JSON sidecar; ``ensure_engine`` rebuilds on mismatch.
* ``flops``: FLOPs per window (meta device); ``cli``: ``python -m export``.
"""
