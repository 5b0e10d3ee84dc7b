"""How the plant detector's network runs: PyTorch, ONNX Runtime or OpenVINO, behind one call.

The sliced engine hands every runtime the same (B, 3, H, W) batch of letterboxed RGB
tiles (in [0, 1], or uint8 for a runtime that normalises inside its graph) and gets
ultralytics' raw head output (B, 4 + classes, anchors) back as a float32 tensor, so
NMS and box scaling stay ultralytics' own whatever ran the network.
ONNX and OpenVINO run the model exported by `app.ml.export` (dynamic batch and
size); OpenVINO is compiled here so that its precision is a setting.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import threading
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal, Protocol, cast

import numpy as np
import torch

Runtime = Literal["torch", "onnx", "openvino"]
Precision = Literal["fp32", "bf16", "fp16", "int8"]

RUNTIMES: tuple[Runtime, ...] = ("torch", "onnx", "openvino")
# What each runtime can do on each device type; anything else is refused at load time.
SUPPORTED_PRECISIONS: dict[tuple[Runtime, str], tuple[Precision, ...]] = {
    ("torch", "cpu"): ("fp32", "bf16"),
    ("torch", "cuda"): ("fp16", "fp32", "bf16"),
    ("onnx", "cpu"): ("fp32",),
    ("onnx", "cuda"): ("fp32",),
    ("openvino", "cpu"): ("fp32", "bf16", "fp16", "int8"),
}
_OPENVINO_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
_TORCH_DTYPE = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class TileNetwork(Protocol):
    """A detector network that takes a batch of letterboxed tiles."""

    device: torch.device  # where the input batch must live
    input_dtype: torch.dtype  # uint8: takes the tiles as they are (0-255) and normalises them itself
    dynamic: bool  # takes any H, W that are multiples of the stride, not only imgsz x imgsz

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB, in [0, 1] or uint8 -> raw predictions (B, 4 + classes, anchors), float32."""
        ...


def resolve_runtime(requested: str, device: torch.device) -> Runtime:
    """'auto' is OpenVINO on a CPU (the fastest here, see benchmarks/README.md) and PyTorch on CUDA."""
    if requested != "auto":
        if requested not in RUNTIMES:
            raise ValueError(f"unknown detection runtime {requested!r}; expected one of {RUNTIMES} or 'auto'")
        return cast(Runtime, requested)
    if device.type == "cpu" and importlib.util.find_spec("openvino") is not None:
        return "openvino"
    return "torch"


def auto_precision(runtime: Runtime, device: torch.device) -> Precision:
    """The hardware's fast native type: fp16 for torch on CUDA, bf16 for OpenVINO on a CPU that has it, else fp32.

    OpenVINO itself picks bf16 on such CPUs; on the trained detector it agrees with fp32 (and with
    SAHI) box for box at 1.7x the speed (benchmarks/README.md). DETECTION_PRECISION=fp32 gives
    ultralytics' own numbers exactly.
    """
    if device.type == "cuda":
        return "fp16" if runtime == "torch" else "fp32"
    if runtime == "openvino" and "bf16" in openvino_precisions():
        return "bf16"
    return "fp32"


def resolve_precision(requested: str, runtime: Runtime, device: torch.device) -> Precision:
    """'auto' is `auto_precision`; an unsupported pair is refused, not silently changed."""
    precision = auto_precision(runtime, device) if requested == "auto" else requested
    supported = SUPPORTED_PRECISIONS.get((runtime, device.type), ())
    if not supported:
        raise ValueError(f"the {runtime} runtime does not run on {device.type}: use DETECTION_RUNTIME=torch or cpu")
    if precision not in supported:
        raise ValueError(f"{runtime} on {device.type} supports precision {supported}, not {precision!r}")
    return cast(Precision, precision)


@dataclass
class TorchNetwork:
    """The ultralytics nn.Module itself, fused, channels-last on a CPU, half (or bf16) when asked."""

    module: torch.nn.Module
    device: torch.device
    input_dtype: torch.dtype
    threads: int = 1  # CPU only
    dynamic: bool = True

    @classmethod
    def from_module(cls, module: torch.nn.Module, device: torch.device, precision: Precision) -> TorchNetwork:
        # A private copy: fusing and casting must not change the model that YOLO.predict() uses.
        module = copy.deepcopy(module).to(device).eval()
        fuse = getattr(module, "fuse", None)
        if callable(fuse):
            module = fuse(verbose=False)
        for parameter in module.parameters():
            parameter.requires_grad_(False)
        dtype = _TORCH_DTYPE[precision]
        module = module.to(dtype)
        if device.type == "cpu":  # what ultralytics' AutoBackend does on x86: oneDNN prefers NHWC
            module = module.to(memory_format=torch.channels_last)
        return cls(module=module, device=device, input_dtype=dtype, threads=cpu_threads())

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cpu" and torch.get_num_threads() != self.threads:
            # ultralytics' select_device() sets cores - 1 at every predictor setup (the segmenter's, say).
            torch.set_num_threads(self.threads)
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
        # Idle threads sleep instead of spinning, so they don't steal cores from the rest of the worker.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
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
    """OpenVINO's CPU plugin on the exported IR, compiled here with the precision asked for.

    The tiles go in as they are, uint8 in NHWC memory: OpenVINO's own preprocessing converts them to
    float, scales by 1/255 and reorders the channels inside the graph, which saves a float copy of every
    batch in Python. Compiled for throughput: one stream per few cores, each with its own infer request,
    and a batch of tiles is split across the streams, which keeps the cores busier on a small network
    than one request whose every layer is spread over all cores.
    """

    requests: list[Any]
    device: torch.device
    input_dtype: torch.dtype = torch.uint8
    dynamic: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)  # the requests serve one caller at a time

    @classmethod
    def load(cls, xml: Path, precision: Precision, threads: int) -> OpenVinoNetwork:
        import openvino as ov
        from openvino.preprocess import PrePostProcessor

        core = ov.Core()
        steps = PrePostProcessor(core.read_model(xml))
        steps.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
        steps.input().preprocess().convert_element_type(ov.Type.f32).scale(255.0)
        steps.input().model().set_layout(ov.Layout("NCHW"))
        config: dict[str, object] = {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_NUM_THREADS": threads}
        if precision != "int8":  # an int8 IR (app.ml.quantize) runs its float remainder at OpenVINO's default
            config["INFERENCE_PRECISION_HINT"] = _OPENVINO_PRECISION[precision]
        compiled = core.compile_model(steps.build(), "CPU", config)
        streams = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        return cls(requests=[compiled.create_infer_request() for _ in range(streams)], device=torch.device("cpu"))

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(batch.permute(0, 2, 3, 1).numpy())  # a view when the tiles are NHWC already
        chunks = np.array_split(array, min(len(self.requests), len(array)))
        with self.lock:
            busy = self.requests[: len(chunks)]
            for request, chunk in zip(busy, chunks, strict=True):
                request.start_async({0: chunk}, share_inputs=True)
            outputs = []
            for request in busy:
                request.wait()
                outputs.append(request.get_output_tensor(0).data.copy())  # the buffer is reused by the next call
        return torch.from_numpy(np.concatenate(outputs))


@cache
def openvino_precisions() -> tuple[Precision, ...]:
    """The precisions this CPU computes natively; OpenVINO quietly runs any other at one of these."""
    import openvino as ov

    capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    native = {"FP32": "fp32", "BF16": "bf16", "FP16": "fp16"}
    return tuple(cast(Precision, native[c]) for c in native if c in capabilities)


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
