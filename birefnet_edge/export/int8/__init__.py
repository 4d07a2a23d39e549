"""Post-training int8 shared by the int8 profiles of ``export/onnx.py``, ``openvino.py`` and ``litert.py``.

- :mod:`.calibration`: the calibration and held-out images (the user's folder or a flagged fallback);
- :mod:`.rules`: the graph view and the structural rules that keep layers in float, with the reason;
- :mod:`.search`: the accuracy search that restores layers to float, and the held-out accuracy gate;
- :mod:`.onnx`, :mod:`.openvino` and :mod:`.litert`: the quantizers (ONNX Runtime static QDQ, NNCF,
  ai_edge_quantizer).

The settings are the profile's ``[quantization]`` table (``formats/_quantization.py``). Importing
this package imports no backend; the quantizers import theirs when they run.
"""
