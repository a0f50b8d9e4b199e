"""The backend pool: ComfyUI servers, their health, and which one takes a job."""
