"""How the plant detector's network runs: PyTorch, ONNX Runtime or OpenVINO, behind one call.

The sliced engine hands every runtime the same (B, 3, H, W) batch, RGB in [0, 1],
and gets ultralytics' raw head output (B, 4 + classes, anchors) back as a float32
tensor, so NMS and box scaling stay ultralytics' own whatever ran the network.
ONNX and OpenVINO run the model exported by `app.ml.export` (dynamic batch and
size); OpenVINO is compiled here so that its precision is a setting.
"""

from __future__ import annotations

import copy
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch

Runtime = Literal["torch", "onnx", "openvino"]
Precision = Literal["fp32", "bf16", "fp16"]

RUNTIMES: tuple[Runtime, ...] = ("torch", "onnx", "openvino")
# What each runtime can do on each device type; anything else is refused at load time.
SUPPORTED_PRECISIONS: dict[tuple[Runtime, str], tuple[Precision, ...]] = {
    ("torch", "cpu"): ("fp32", "bf16"),
    ("torch", "cuda"): ("fp16", "fp32", "bf16"),
    ("onnx", "cpu"): ("fp32",),
    ("onnx", "cuda"): ("fp32",),
    ("openvino", "cpu"): ("fp32", "bf16", "fp16"),
}
_OPENVINO_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
_TORCH_DTYPE = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class TileNetwork(Protocol):
    """A detector network that takes a batch of letterboxed tiles."""

    device: torch.device  # where the input batch must live
    input_dtype: torch.dtype
    dynamic: bool  # takes any H, W that are multiples of the stride, not only imgsz x imgsz

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> raw predictions (B, 4 + classes, anchors), float32, on `device`."""
        ...


def resolve_runtime(requested: str, device: torch.device) -> Runtime:
    """'auto' is OpenVINO on a CPU (the fastest here, see benchmarks/README.md) and PyTorch on CUDA."""
    if requested != "auto":
        if requested not in RUNTIMES:
            raise ValueError(f"unknown detection runtime {requested!r}; expected one of {RUNTIMES} or 'auto'")
        return requested  # type: ignore[return-value]
    if device.type == "cpu" and importlib.util.find_spec("openvino") is not None:
        return "openvino"
    return "torch"


def resolve_precision(requested: str, runtime: Runtime, device: torch.device) -> Precision:
    """'auto' is fp16 on CUDA and fp32 on a CPU; an unsupported pair is refused, not silently changed."""
    precision = ("fp16" if device.type == "cuda" else "fp32") if requested == "auto" else requested
    supported = SUPPORTED_PRECISIONS.get((runtime, device.type), ())
    if precision not in supported:
        raise ValueError(f"{runtime} on {device.type} supports precision {supported}, not {precision!r}")
    return precision  # type: ignore[return-value]


@dataclass
class TorchNetwork:
    """The ultralytics nn.Module itself, fused, channels-last on a CPU, half (or bf16) when asked."""

    module: torch.nn.Module
    device: torch.device
    input_dtype: torch.dtype
    dynamic: bool = True

    @classmethod
    def from_module(cls, module: torch.nn.Module, device: torch.device, precision: Precision) -> TorchNetwork:
        # A private copy: fusing and casting must not change the model that YOLO.predict() uses.
        module = copy.deepcopy(module).to(device).eval()
        if hasattr(module, "fuse"):
            module = module.fuse(verbose=False)
        for parameter in module.parameters():
            parameter.requires_grad_(False)
        dtype = _TORCH_DTYPE[precision]
        module = module.to(dtype)
        if device.type == "cpu":  # what ultralytics' AutoBackend does on x86: oneDNN prefers NHWC
            module = module.to(memory_format=torch.channels_last)
        return cls(module=module, device=device, input_dtype=dtype)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            output = self.module(batch)
        output = output[0] if isinstance(output, list | tuple) else output
        return output.float()


@dataclass
class OnnxNetwork:
    """ONNX Runtime on the exported model; one session, every core of the process."""

    session: Any
    input_name: str
    device: torch.device
    input_dtype: torch.dtype = torch.float32
    dynamic: bool = True

    @classmethod
    def load(cls, path: Path, device: torch.device, threads: int) -> OnnxNetwork:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        # Inputs and outputs go through host memory either way, so the batch is built on the CPU.
        return cls(session=session, input_name=session.get_inputs()[0].name, device=torch.device("cpu"))

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        array = batch.contiguous().numpy()
        (output, *_) = self.session.run(None, {self.input_name: array})
        return torch.from_numpy(output)


@dataclass
class OpenVinoNetwork:
    """OpenVINO's CPU plugin on the exported IR, compiled here with the precision asked for."""

    request: Any
    device: torch.device
    input_dtype: torch.dtype = torch.float32
    dynamic: bool = True

    @classmethod
    def load(cls, xml: Path, precision: Precision, threads: int) -> OpenVinoNetwork:
        import openvino as ov

        core = ov.Core()
        config = {
            "INFERENCE_PRECISION_HINT": _OPENVINO_PRECISION[precision],
            # One request over a whole batch of tiles: LATENCY keeps every core on that one request.
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": threads,
        }
        compiled = core.compile_model(core.read_model(xml), "CPU", config)
        return cls(request=compiled.create_infer_request(), device=torch.device("cpu"))

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(batch.numpy())
        self.request.infer({0: array})
        # The output buffer is reused by the next call: copy it out.
        return torch.from_numpy(self.request.get_output_tensor(0).data.copy())


def cpu_threads() -> int:
    """Threads for one inference: the cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def load_network(
    *,
    runtime: Runtime,
    precision: Precision,
    device: torch.device,
    module: torch.nn.Module | None = None,
    exported: Path | None = None,
) -> TileNetwork:
    """Build the network for `runtime`: torch needs the module, onnx/openvino the exported model."""
    if runtime == "torch":
        if module is None:
            raise ValueError("the torch runtime needs the loaded nn.Module")
        return TorchNetwork.from_module(module, device, precision)
    if exported is None:
        raise ValueError(f"the {runtime} runtime needs an exported model")
    if runtime == "onnx":
        return OnnxNetwork.load(exported, device, cpu_threads())
    return OpenVinoNetwork.load(exported, precision, cpu_threads())
