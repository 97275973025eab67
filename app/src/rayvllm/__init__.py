"""rayvllm: vLLM on Ray Serve, deployed by a KubeRay RayService chart.

Nothing is imported or built at import time; `rayvllm.serve.builder:build_app` is the Serve builder.
"""

__version__ = "0.1.0"
