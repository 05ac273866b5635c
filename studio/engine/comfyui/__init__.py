"""The ComfyUI backend: servers, client, workflows, farm."""
