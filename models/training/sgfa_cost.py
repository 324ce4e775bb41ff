"""The cost of SGFA's variants on this CPU: parameters, FLOPs, ONNX Runtime time at batch 1."""
from __future__ import annotations

import torch

from models.nets.sgfa import INPUT_SIZE, SGFA


def main(argv=None) -> None:
    """``python -m models.training.sgfa_cost``: parameters, FLOPs and ONNX Runtime CPU time at batch 1 of the
    paper's design (128x128 output, 128 head channels) and two cheaper variants (random weights:
    the cost does not depend on them), beside mnv2_sdd's asset."""
    import argparse
    import tempfile
    from pathlib import Path

    from torch.utils.flop_counter import FlopCounterMode

    from models.tools.export import benchmark, ort_session

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=100)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        for size, head in ((128, 128), (64, 128), (64, 64)):
            model = SGFA(output_size=size, head_channels=head).eval()
            x = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
            with FlopCounterMode(display=False) as counter, torch.no_grad():
                model(x)
            path = Path(tmp) / f"sgfa{size}.onnx"
            torch.onnx.export(model, (x,), str(path), opset_version=17, input_names=["input"],
                              output_names=["maps"], dynamo=False)
            timing = benchmark(ort_session(path, args.threads), INPUT_SIZE, runs=args.runs)
            print(f"sgfa output {size}x{size}, head {head} channels: {sum(q.numel() for q in model.parameters()) / 1e6:.2f} M parameters, "
                  f"{counter.get_total_flops() / 1e9:.2f} GFLOPs, ORT CPU batch 1 ({args.threads} thread): "
                  f"median {timing['median_ms']:.1f} ms wall, {timing['cpu_median_ms']:.1f} ms CPU", flush=True)
    from models.registry import ASSETS_DIR

    reference = ASSETS_DIR / "mnv2_sdd.onnx"
    if reference.is_file():
        timing = benchmark(ort_session(reference, args.threads), 192, runs=args.runs)
        print(f"mnv2_sdd (assets, for reference): ORT CPU batch 1: median {timing['median_ms']:.1f} ms wall, "
              f"{timing['cpu_median_ms']:.1f} ms CPU")


if __name__ == "__main__":
    main()
