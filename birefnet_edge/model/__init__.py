"""BiRefNet in PyTorch: variants, backbones, weights loading and the deployment contract."""

from birefnet_edge.images import deterministic_input  # the golden input rule; torch-free, so it lives there
from birefnet_edge.model import pvt_v2, swin, timm_features  # noqa: F401  (first: registers the backbones the variants use)
from birefnet_edge.model._registry import MODELS, create_model, get_config, list_models, register_config
from birefnet_edge.model.birefnet import BiRefNet, BiRefNetConfig, TrainOutputs, check_input_size
from birefnet_edge.model.contract import Contract, cutout, load_image, postprocess, preprocess
from birefnet_edge.model.weights import WeightsInfo, batchnorm_statistics_from, deterministic_weights, load_model

__all__ = [
    "MODELS",
    "BiRefNet",
    "BiRefNetConfig",
    "Contract",
    "TrainOutputs",
    "WeightsInfo",
    "batchnorm_statistics_from",
    "check_input_size",
    "create_model",
    "cutout",
    "deterministic_input",
    "deterministic_weights",
    "get_config",
    "list_models",
    "load_image",
    "load_model",
    "postprocess",
    "preprocess",
    "register_config",
]
