"""The laptop runner: `rayvllm serve` (`make serve`) on a local Ray, and the offline models it serves."""
