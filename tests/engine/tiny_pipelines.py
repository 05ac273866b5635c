"""Tiny random-weight image-to-video pipelines in every layout the diffusers backend supports.

They are real diffusers pipelines (same classes, same ``save_pretrained`` folder layout, same
``model_index.json``) with a few thousand parameters each, so the model manager and the backend
run their real loading and generation code on CPU in well under a second per call. Used by the
tests (session fixture) and by ``benchmarks/engine.py``. Nothing here is downloaded: the T5
tokenizer is built from a small hand-made vocabulary.

Layouts: ``wan21`` (Wan 2.1 I2V, CLIP image encoder), ``wan21_flf`` (Wan 2.1 first+last frame),
``wan22`` (Wan 2.2 A14B: two transformers + boundary_ratio), ``wan22_5b`` (Wan 2.2 TI2V-5B:
48-channel VAE, expand_timesteps), ``wan_vace`` (Wan 2.1 VACE: 16-channel transformer with VACE
blocks, references), ``ltx`` (LTX-Video I2V), ``svd`` (Stable Video Diffusion).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pathlib import Path
from typing import Any

LAYOUTS = ("wan21", "wan21_flf", "wan22", "wan22_5b", "wan_vace", "ltx", "svd")

_WORDS = ("a the man woman walks turns smiles camera push in left right slowly face dance "
          "monkey negative blurry astronaut looks head nods").split()


def _t5(seed: int = 0) -> tuple[Any, Any]:
    import torch
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [("\u2581" + w, -3.0) for w in _WORDS]
    vocab += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0)
    torch.manual_seed(seed)
    config = T5Config(vocab_size=len(vocab), d_model=32, d_ff=37, d_kv=8, num_layers=2, num_heads=4,
                      relative_attention_num_buckets=8, decoder_start_token_id=0)
    return T5EncoderModel(config).eval(), tokenizer


def _wan_transformer(in_channels: int, out_channels: int, image_dim: int | None = None,
                     pos_embed_seq_len: int | None = None, seed: int = 0) -> Any:
    import torch
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=in_channels,
        out_channels=out_channels, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2,
        cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
        image_dim=image_dim, pos_embed_seq_len=pos_embed_seq_len)


def _wan_scheduler() -> Any:
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)


def build_pipeline(layout: str) -> Any:
    """A freshly initialised (seeded, deterministic) tiny pipeline of ``layout``."""
    import torch

    if layout in ("wan21", "wan21_flf"):
        from diffusers import AutoencoderKLWan, WanImageToVideoPipeline
        from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

        torch.manual_seed(0)
        vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                               temperal_downsample=[False, True, True])
        text_encoder, tokenizer = _t5()
        torch.manual_seed(0)
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=4, projection_dim=4, num_hidden_layers=2, num_attention_heads=2, image_size=32,
            intermediate_size=16, patch_size=4))
        # FLF2V's transformer carries a learned position embedding over both images' tokens.
        pos = 2 * ((32 // 4) ** 2 + 1) if layout == "wan21_flf" else None
        transformer = _wan_transformer(36, 16, image_dim=4, pos_embed_seq_len=pos)
        return WanImageToVideoPipeline(
            tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=_wan_scheduler(),
            image_processor=CLIPImageProcessor(crop_size=32, size=32), image_encoder=image_encoder,
            transformer=transformer)
    if layout == "wan22":
        from diffusers import AutoencoderKLWan, WanImageToVideoPipeline

        torch.manual_seed(0)
        vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                               temperal_downsample=[False, True, True])
        text_encoder, tokenizer = _t5()
        return WanImageToVideoPipeline(
            tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=_wan_scheduler(),
            transformer=_wan_transformer(36, 16, seed=0), transformer_2=_wan_transformer(36, 16, seed=1),
            boundary_ratio=0.875)
    if layout == "wan22_5b":
        from diffusers import AutoencoderKLWan, WanImageToVideoPipeline

        torch.manual_seed(0)
        vae = AutoencoderKLWan(base_dim=3, z_dim=48, in_channels=12, out_channels=12, is_residual=True,
                               patch_size=2, latents_mean=[0.0] * 48, latents_std=[1.0] * 48,
                               dim_mult=[1, 1, 1, 1], num_res_blocks=1, scale_factor_spatial=16,
                               scale_factor_temporal=4, temperal_downsample=[False, True, True])
        text_encoder, tokenizer = _t5()
        return WanImageToVideoPipeline(
            tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=_wan_scheduler(),
            transformer=_wan_transformer(48, 48), expand_timesteps=True)
    if layout == "wan_vace":
        from diffusers import AutoencoderKLWan, WanVACEPipeline, WanVACETransformer3DModel

        torch.manual_seed(0)
        # Unit latent statistics (as the 5B layout): the control video's latents are the VAE's own.
        vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                               temperal_downsample=[False, True, True], latents_mean=[0.0] * 16,
                               latents_std=[1.0] * 16)
        text_encoder, tokenizer = _t5()
        torch.manual_seed(0)
        # The control stream is 96 channels: 2 x 16 (kept and generated parts of the control
        # video, VAE-encoded) + 64 (the mask folded over the VAE's 8x8 pixels per latent).
        transformer = WanVACETransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16,
            out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
            qk_norm="rms_norm_across_heads", rope_max_seq_len=32, vace_layers=[0, 1], vace_in_channels=96)
        # A reference reaches the video only through attention across frames. At random init the
        # tiny VAE's latents barely differ between images (±0.03) and self-attention adds little
        # to each token, so two references would change the frames by far less than one uint8
        # level. Scaled so latents span about ±1 (as a trained VAE's) and attention mixes tokens,
        # the tests can see which references a take was conditioned on.
        with torch.no_grad():
            vae.quant_conv.weight.mul_(30.0)
            vae.quant_conv.bias.mul_(30.0)
            for block in [*transformer.vace_blocks, *transformer.blocks]:
                block.attn1.to_out[0].weight.mul_(30.0)
        return WanVACEPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae,
                               scheduler=_wan_scheduler(), transformer=transformer)
    if layout == "ltx":
        from diffusers import (AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler,
                               LTXImageToVideoPipeline, LTXVideoTransformer3DModel)

        torch.manual_seed(0)
        transformer = LTXVideoTransformer3DModel(
            in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=4,
            attention_head_dim=8, cross_attention_dim=32, num_layers=1, caption_channels=32)
        torch.manual_seed(0)
        vae = AutoencoderKLLTXVideo(
            in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8),
            decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
            decoder_layers_per_block=(1, 1, 1, 1, 1), spatio_temporal_scaling=(True, True, False, False),
            decoder_spatio_temporal_scaling=(True, True, False, False),
            decoder_inject_noise=(False, False, False, False, False),
            upsample_residual=(False, False, False, False), upsample_factor=(1, 1, 1, 1),
            timestep_conditioning=False, patch_size=1, patch_size_t=1, encoder_causal=True,
            decoder_causal=False)
        text_encoder, tokenizer = _t5()
        return LTXImageToVideoPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae,
                                       text_encoder=text_encoder, tokenizer=tokenizer,
                                       transformer=transformer)
    if layout == "svd":
        from diffusers import (AutoencoderKLTemporalDecoder, EulerDiscreteScheduler,
                               StableVideoDiffusionPipeline, UNetSpatioTemporalConditionModel)
        from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

        torch.manual_seed(0)
        unet = UNetSpatioTemporalConditionModel(
            block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=8, out_channels=4,
            down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
            up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
            cross_attention_dim=32, num_attention_heads=8, projection_class_embeddings_input_dim=96,
            addition_time_embed_dim=32, num_frames=14)
        scheduler = EulerDiscreteScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", interpolation_type="linear",
            num_train_timesteps=1000, prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002,
            steps_offset=1, timestep_spacing="leading", timestep_type="continuous",
            use_karras_sigmas=True)
        torch.manual_seed(0)
        vae = AutoencoderKLTemporalDecoder(block_out_channels=[32, 64], in_channels=3, out_channels=3,
                                           down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
                                           latent_channels=4)
        torch.manual_seed(0)
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
            # SVD always resizes the conditioning image to 224 for CLIP; 32 px patches keep it tiny.
            hidden_size=32, projection_dim=32, num_hidden_layers=2, num_attention_heads=4, image_size=224,
            intermediate_size=37, patch_size=32))
        return StableVideoDiffusionPipeline(vae=vae, image_encoder=image_encoder, unet=unet,
                                            scheduler=scheduler,
                                            feature_extractor=CLIPImageProcessor(crop_size=32, size=32))
    raise ValueError(f"unknown tiny layout {layout!r}; known: {', '.join(LAYOUTS)}")


def save_tiny_pipeline(layout: str, folder: Path) -> Path:
    """Build ``layout`` and save it in diffusers folder format (safetensors) under ``folder``."""
    folder = Path(folder)
    build_pipeline(layout).save_pretrained(folder, safe_serialization=True)
    return folder


def save_all(root: Path, layouts: tuple[str, ...] = LAYOUTS) -> dict[str, Path]:
    return {name: save_tiny_pipeline(name, Path(root) / name) for name in layouts}


def write_tiny_lora(path: Path, layout: str = "wan21", rank: int = 2, scale: float = 0.5,
                    seed: int = 0) -> Path:
    """Write a LoRA for the tiny transformer of ``layout`` in diffusers' key format
    (``transformer.<module>.lora_A/B.weight``), with non-zero A and B so it changes the output."""
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    if layout.startswith("wan"):
        dim = 24  # 2 heads x 12
        for block in range(2):
            for attn in ("attn1", "attn2"):
                for proj in ("to_q", "to_k", "to_v", "to_out.0"):
                    key = f"transformer.blocks.{block}.{attn}.{proj}"
                    tensors[f"{key}.lora_A.weight"] = torch.randn(rank, dim, generator=g) * scale
                    tensors[f"{key}.lora_B.weight"] = torch.randn(dim, rank, generator=g) * scale
    elif layout == "ltx":
        dim = 32  # 4 heads x 8
        for proj in ("to_q", "to_k", "to_v", "to_out.0"):
            key = f"transformer.transformer_blocks.0.attn1.{proj}"
            tensors[f"{key}.lora_A.weight"] = torch.randn(rank, dim, generator=g) * scale
            tensors[f"{key}.lora_B.weight"] = torch.randn(dim, rank, generator=g) * scale
    else:
        raise ValueError(f"no tiny LoRA for layout {layout!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


_BUILT: dict[Path, dict[str, Path]] = {}


def tiny_models_once(root: Path) -> dict[str, Path]:
    """Every layout saved under ``root``, built at most once per process (test sessions share it
    between test files)."""
    root = Path(root)
    if root not in _BUILT:
        if (root / "done").exists():
            _BUILT[root] = {name: root / name for name in LAYOUTS}
        else:
            _BUILT[root] = save_all(root)
            (root / "done").write_text("ok")
    return _BUILT[root]


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """One torch thread while the tiny pipelines run: other test processes share this 2-core
    machine, and OpenMP threads waiting on each other made runs 5-20x slower under load; same-
    seed runs in one process are then bit-identical too. Restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
