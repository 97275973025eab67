"""What runs in the RayService: the Serve app builder, the replica around vLLM, the failover gateway.

Nothing is imported at import time; `rayvllm.serve.builder:build_app` is the import_path serveConfigV2 names.
"""
