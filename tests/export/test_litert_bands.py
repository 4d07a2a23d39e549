"""The gather deformable conv's row bands survive litert-torch: one matmul per band, no matmul over all bands.

Joined as (B, band·W, O) matmul outputs, the converter rewrote the bands' matmuls (one weight) as a single
FULLY_CONNECTED over a CONCATENATION of every band's weighted sum, so all bands' columns were alive at once
(a 784 MB tensor in BiRefNet_lite at 1024 px). One conv converts in seconds, so the default run checks it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("litert_torch", reason="litert-torch is not installed (extra 'litert')")
litert = pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert is not installed (extra 'litert')")

from birefnet_edge.model.layers.deform_conv import DeformableConv2d  # noqa: E402


def test_each_band_keeps_its_own_matmul_and_the_result_is_exact() -> None:
    import litert_torch

    torch.manual_seed(0)
    conv = DeformableConv2d(8, 4, kernel_size=3, form="gather").eval()
    conv.band = 8 * 9 * 4 * 16  # 4 rows of the 16 x 16 map per band: 4 bands
    with torch.no_grad():
        conv.offset_conv.weight.normal_(0, 0.5)  # offsets of a pixel or two, reaching past the border
    x = torch.randn(1, 8, 16, 16)
    with torch.no_grad():
        ref = conv(x).numpy()
        edge = litert_torch.convert(conv, (x,))
    interpreter = litert.Interpreter(
        model_content=bytes(edge.model_content()),
        experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    ops = interpreter._get_ops_details()
    made_by = {t: op["op_name"] for op in ops for t in op["outputs"]}
    matmuls = [op for op in ops if op["op_name"] in ("FULLY_CONNECTED", "BATCH_MATMUL")]  # the convs are CONV_2D
    assert len(matmuls) == 4, [op["op_name"] for op in ops]
    assert not any(made_by.get(op["inputs"][0]) == "CONCATENATION" for op in matmuls)
    # The order edge (deform_conv._after) survives: each later band's row reads come after the band before
    # it is combined, so even a regrouping interpreter (LiteRT's default) cannot read every band first.
    producer = {t: i for i, op in enumerate(ops) for t in op["outputs"]}

    def ancestors(i: int) -> set[int]:
        seen, todo = set(), [i]
        while todo:
            for tensor in ops[todo.pop()]["inputs"]:
                j = producer.get(tensor)
                if j is not None and j not in seen:
                    seen.add(j)
                    todo.append(j)
        return seen

    reads = [i for i, op in enumerate(ops) if op["op_name"] in ("EMBEDDING_LOOKUP", "GATHER", "GATHER_ND")]
    combines = [i for i, op in enumerate(ops) if op["op_name"] in ("FULLY_CONNECTED", "BATCH_MATMUL")]
    assert len(reads) == 4 * 4, [op["op_name"] for op in ops]
    for band in range(1, 4):
        assert all(combines[band - 1] in ancestors(read) for read in reads[4 * band : 4 * band + 4]), band
    out = litert.Interpreter(model_content=bytes(edge.model_content())).get_signature_runner()
    np.testing.assert_allclose(next(iter(out(args_0=x.numpy()).values())), ref, atol=1e-5)
