"""PyTorch members -> verified ONNX -> TensorRT engines. The only package that imports torch.

Depends on :mod:`inference` (engine interface, manifest); :mod:`inference` never imports it.
Nothing here runs on import; torch, timm and TensorRT are imported by the modules that need them.

* ``registry``: arch name -> builder, kind, input channels, stride; ``module:function`` archs.
* ``unet3d`` (+ ``x3d``, ``densenet3d``, ``resnext3d``) and ``unet2d`` (timm): the five members as
  the 3rd-place solution trained them (module tree, names, axis order, normalisation inside);
  ``blocks``: their shared neck, attention and decoder blocks; ``deps``: one-line load errors.
* ``checkpoints``: plain / Lightning / EMA checkpoints, strict loading with a readable diff, sha256.
* ``onnx_export``: one member -> ONNX (checker, metadata, ONNX Runtime parity); ``parity``: the
  verdict, with a float64 run when fp32 rounding may explain a gap; ``manifest_export``: every member
  of a manifest.
* ``tensorrt``: ONNX -> TensorRT 10 engine; ``tensorrt_sidecar``: its JSON sidecar; ``tensorrt_cache``:
  ``ensure_engine`` (reuse a matching engine, else rebuild).
* ``flops``: FLOPs per window (meta device); ``cli``: ``python -m export``.
"""
