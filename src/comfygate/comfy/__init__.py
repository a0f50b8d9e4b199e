"""ComfyUI's wire protocol: HTTP client, websocket listener, typed events, local process."""
