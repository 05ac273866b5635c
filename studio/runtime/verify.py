"""The runtime's self-test: a tiny random-weight Wan 2.1 image-to-video pipeline (the default
family), built in memory and run for two steps, on the GPU when torch sees one.

Runs inside the runtime (worker side). It exercises what a real job needs — torch on the device,
the diffusers pipeline class, transformers' T5 and CLIP encoders, the scheduler, the VAE decode —
without downloading anything: the tokenizer is made from a hand-written vocabulary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

_WORDS = ["a", "the", "man", "woman", "walks", "turns", "smiles", "camera", "slowly", "face", "looks", "head"]


def build_tiny_wan() -> Any:
    import torch
    from diffusers import (
        AutoencoderKLWan,
        UniPCMultistepScheduler,
        WanImageToVideoPipeline,
        WanTransformer3DModel,
    )
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
        T5Config,
        T5EncoderModel,
        T5Tokenizer,
    )

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [("\u2581" + w, -3.0) for w in _WORDS] + [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0)
    torch.manual_seed(0)
    text_encoder = T5EncoderModel(T5Config(vocab_size=len(vocab), d_model=32, d_ff=37, d_kv=8, num_layers=2,
                                           num_heads=4, relative_attention_num_buckets=8,
                                           decoder_start_token_id=0)).eval()
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=4, projection_dim=4, num_hidden_layers=2, num_attention_heads=2, image_size=32,
        intermediate_size=16, patch_size=4))
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=36, out_channels=16,
        text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32, image_dim=4)
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    return WanImageToVideoPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler,
                                   image_processor=CLIPImageProcessor(crop_size=32, size=32),
                                   image_encoder=image_encoder, transformer=transformer)


def run_verify(progress: Callable[[Any], None], cancelled: Callable[[], bool],
               device: str | None = None) -> dict[str, Any]:
    import numpy as np
    import torch
    from PIL import Image

    from studio.engine.base import Cancelled, Progress

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.perf_counter()
    progress(Progress(0, 2, "loading", f"building a tiny Wan 2.1 I2V pipeline on {device}"))
    pipe = build_tiny_wan().to(device)
    pipe.set_progress_bar_config(disable=True)
    build_s = time.perf_counter() - t0
    steps = 2

    def on_step(p: Any, i: int, t: Any, kw: dict[str, Any]) -> dict[str, Any]:
        progress(Progress(i + 1, steps, "generating", f"step {i + 1}/{steps}"))
        if cancelled():
            raise Cancelled()
        return kw

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    t1 = time.perf_counter()
    out = pipe(image=image, prompt="a man turns his head slowly", height=32, width=32, num_frames=5,
               num_inference_steps=steps, guidance_scale=5.0, output_type="np", callback_on_step_end=on_step,
               generator=torch.Generator(device="cpu").manual_seed(0))
    frames = np.asarray(out.frames)[0]
    run_s = time.perf_counter() - t1
    if frames.shape != (5, 32, 32, 3) or not np.isfinite(frames).all():
        raise RuntimeError(f"the tiny pipeline returned frames of shape {frames.shape} "
                           f"(finite: {bool(np.isfinite(frames).all())})")
    import diffusers
    import transformers

    return {"ok": True, "device": device, "device_name": torch.cuda.get_device_name(0) if device == "cuda" else "",
            "frames": int(frames.shape[0]), "width": 32, "height": 32, "steps": steps,
            "build_seconds": round(build_s, 3), "run_seconds": round(run_s, 3),
            "seconds": round(time.perf_counter() - t0, 3), "torch": torch.__version__,
            "diffusers": diffusers.__version__, "transformers": transformers.__version__}
