"""What a real ComfyUI 0.3.64 answered, as the facts the fake server and the tests need.

Transcribed from a recording of a real server (CPU, no model files): the shapes of its HTTP
answers, the order and shape of its websocket messages, and the exact bodies of its validation
refusals. The project carries these itself because a clone of it has no recording to read;
``test_client.py::test_records_match_the_recording`` checks them against the recording when it
is there (CI) and skips otherwise.
"""

from __future__ import annotations

from typing import Any

VERSION = "0.3.64"

# GET /system_stats of a CPU server (values of the recording machine; shape is what matters)
SYSTEM_STATS: dict[str, Any] = {
    "system": {
        "os": "posix",
        "ram_total": 25275990016,
        "ram_free": 24105566208,
        "comfyui_version": VERSION,
        "required_frontend_version": "1.27.10",
        "installed_templates_version": "0.1.95",
        "required_templates_version": "0.1.95",
        "python_version": "3.11.7",
        "pytorch_version": "2.14.1+cu130",
        "embedded_python": False,
        "argv": ["main.py", "--cpu", "--listen", "127.0.0.1", "--port", "8188"],
    },
    "devices": [{
        "name": "cpu", "type": "cpu", "index": None,
        "vram_total": 25275990016, "vram_free": 24105566208,
        "torch_vram_total": 25275990016, "torch_vram_free": 24105566208,
    }],
}

# GET /models: the model folder names, in the server's order
MODEL_FOLDERS: list[str] = [
    "checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision",
    "style_models", "embeddings", "diffusers", "vae_approx", "controlnet", "gligen",
    "upscale_models", "custom_nodes", "hypernetworks", "photomaker", "classifiers",
    "model_patches", "audio_encoders",
]

# the "feature_flags" answer to a client that announces its own flags first
SERVER_FEATURES: dict[str, Any] = {"supports_preview_metadata": True, "max_upload_size": 100 * 2**20}

# extra_data keys ComfyUI drops before it stores a prompt in its history
SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")

# The model-free graph of the recording's "ok" and "interrupt" cases (interrupt: amount 400).
CONNECTION_GRAPH: dict[str, Any] = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "start.jpg"}},
    "2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "bilinear",
                                                  "width": 832, "height": 480, "crop": "center"}},
    "3": {"class_type": "RepeatImageBatch", "inputs": {"image": ["2", 0], "amount": 33}},
    "4": {"class_type": "CreateVideo", "inputs": {"images": ["3", 0], "fps": 16.0}},
    "5": {"class_type": "SaveVideo", "inputs": {"video": ["4", 0], "filename_prefix": "cs/trace",
                                                 "format": "mp4", "codec": "h264"}},
}

# Websocket message types, in order, as the recorder's socket saw them (it connected, then
# queued). "ok" ran the graph a second time: nodes 1-4 came from the cache, only 5 executed.
OK_WS_TYPES: list[str] = [
    "status", "status", "status", "execution_start", "execution_cached", "progress_state",
    "executing", "executed", "progress_state", "execution_success", "status", "executing",
]
# "interrupt": POST /interrupt while node 3 ran (nodes 1 and 2 cached); the recording ends there
INTERRUPT_WS_TYPES: list[str] = [
    "status", "status", "status", "execution_start", "execution_cached", "progress_state",
    "executing", "execution_interrupted",
]

# The keys of each message's "data", by type (every form seen)
WS_DATA_KEYS: dict[str, set[frozenset[str]]] = {
    "status": {frozenset({"status", "sid"}), frozenset({"status"})},
    "execution_start": {frozenset({"prompt_id", "timestamp"})},
    "execution_cached": {frozenset({"nodes", "prompt_id", "timestamp"})},
    "progress_state": {frozenset({"prompt_id", "nodes"})},
    "executing": {frozenset({"node", "display_node", "prompt_id"}), frozenset({"node", "prompt_id"})},
    "executed": {frozenset({"node", "display_node", "output", "prompt_id"})},
    "execution_success": {frozenset({"prompt_id", "timestamp"})},
    "execution_interrupted": {frozenset({"prompt_id", "node_id", "node_type", "executed", "timestamp"})},
}
PROGRESS_STATE_NODE_KEYS = frozenset({"value", "max", "state", "node_id", "prompt_id",
                                      "display_node_id", "parent_node_id", "real_node_id"})

# GET /history/<id>: the entry's keys, its status keys, the output of a SaveVideo node
HISTORY_ENTRY_KEYS = frozenset({"prompt", "outputs", "status", "meta"})
HISTORY_STATUS_KEYS = frozenset({"status_str", "completed", "messages"})
SAVE_VIDEO_OUTPUT: dict[str, Any] = {
    "images": [{"filename": "trace_00001_.mp4", "subfolder": "cs", "type": "output"}],
    "animated": [True],
}
HISTORY_META_KEYS = frozenset({"node_id", "display_node", "parent_node", "real_node_id"})

# POST /prompt, 400: the connection graph with image "nope.png" (not in the input folder)
ANSWER_MISSING_IMAGE: dict[str, Any] = {
    "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
              "details": "", "extra_info": {}},
    "node_errors": {"1": {
        "errors": [{"type": "custom_validation_failed", "message": "Custom validation failed for node",
                    "details": "image - Invalid image file: nope.png", "extra_info": {"input_name": "image"}}],
        "dependent_outputs": ["5"], "class_type": "LoadImage"}},
}
# POST /prompt, 400: a node "9" of class "NoSuchNode"
ANSWER_UNKNOWN_NODE: dict[str, Any] = {
    "error": {"type": "invalid_prompt", "message": "Cannot execute because node NoSuchNode does not exist.",
              "details": "Node ID '#9'", "extra_info": {}},
    "node_errors": {},
}
# POST /prompt, 400: a graph without an output node
ANSWER_NO_OUTPUTS: dict[str, Any] = {
    "error": {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "",
              "extra_info": {}},
    "node_errors": {},
}

# A Wan 2.1 image-to-video graph on a server without its model files, and the server's answer:
# one value_not_in_list per missing file, nothing else.
WAN21_GRAPH: dict[str, Any] = {
    "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "wan2.1_i2v_480p_14B_fp16.safetensors",
                                                  "weight_dtype": "default"}},
    "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                                                  "type": "wan", "device": "default"}},
    "3": {"class_type": "VAELoader", "inputs": {"vae_name": "wan_2.1_vae.safetensors"}},
    "4": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "clip_vision_h.safetensors"}},
    "5": {"class_type": "LoadImage", "inputs": {"image": "start.jpg"}},
    "6": {"class_type": "CLIPVisionEncode", "inputs": {"clip_vision": ["4", 0], "image": ["5", 0],
                                                        "crop": "none"}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0],
                                                      "text": "slow push in, she blinks and smiles"}},
    "8": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": ""}},
    "9": {"class_type": "WanImageToVideo", "inputs": {
        "positive": ["7", 0], "negative": ["8", 0], "vae": ["3", 0], "width": 832, "height": 480,
        "length": 81, "batch_size": 1, "clip_vision_output": ["6", 0], "start_image": ["5", 0]}},
    "10": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["1", 0], "shift": 8.0}},
    "11": {"class_type": "KSampler", "inputs": {
        "model": ["10", 0], "seed": 1234, "steps": 30, "cfg": 5.0, "sampler_name": "uni_pc",
        "scheduler": "simple", "positive": ["9", 0], "negative": ["9", 1], "latent_image": ["9", 2],
        "denoise": 1.0}},
    "12": {"class_type": "VAEDecode", "inputs": {"samples": ["11", 0], "vae": ["3", 0]}},
    "13": {"class_type": "CreateVideo", "inputs": {"images": ["12", 0], "fps": 16.0}},
    "14": {"class_type": "SaveVideo", "inputs": {"video": ["13", 0], "filename_prefix": "cs/wan",
                                                  "format": "mp4", "codec": "h264"}},
}


def _not_in_list(input_name: str, value: str, choices: list[str]) -> dict[str, Any]:
    return {"type": "value_not_in_list", "message": "Value not in list",
            "details": f"{input_name}: '{value}' not in {choices}",
            "extra_info": {"input_name": input_name, "input_config": [choices, {}], "received_value": value}}


ANSWER_WAN21_MISSING_MODELS: dict[str, Any] = {
    "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
              "details": "", "extra_info": {}},
    "node_errors": {
        "3": {"errors": [_not_in_list("vae_name", "wan_2.1_vae.safetensors", ["pixel_space"])],
              "dependent_outputs": ["14"], "class_type": "VAELoader"},
        "4": {"errors": [_not_in_list("clip_name", "clip_vision_h.safetensors", [])],
              "dependent_outputs": ["14"], "class_type": "CLIPVisionLoader"},
        "2": {"errors": [_not_in_list("clip_name", "umt5_xxl_fp8_e4m3fn_scaled.safetensors", [])],
              "dependent_outputs": ["14"], "class_type": "CLIPLoader"},
        "1": {"errors": [_not_in_list("unet_name", "wan2.1_i2v_480p_14B_fp16.safetensors", [])],
              "dependent_outputs": ["14"], "class_type": "UNETLoader"},
    },
}
